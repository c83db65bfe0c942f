"""seqtasks.torch_weights: torch.save files read with pickle + numpy, exactly, and code in them refused unrun."""
import ast
import os
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from seqtasks.errors import UserError
from seqtasks.torch_weights import read_torch_file, state_dict
from torch_files import LEGACY_MAGIC, Tensor, write_legacy, write_zip

ROOT = Path(__file__).resolve().parent.parent
RNG = np.random.default_rng(0)
WRITERS = {"legacy": write_legacy, "zip": write_zip}


def contents():
    shared = np.arange(30, dtype=np.float32)
    return OrderedDict([
        ("conv.weight", RNG.normal(size=(4, 3, 3, 3)).astype(np.float32)),
        ("bn.running_var", RNG.uniform(0.5, 2, 4).astype(np.float64)),
        ("bn.num_batches_tracked", np.array(7, np.int64)),
        ("half", RNG.normal(size=(2, 5)).astype(np.float16)),
        ("mask", np.array([True, False, True])),
        ("empty", np.zeros((0, 3), np.float32)),
        # two views of one storage: a transposed one (strides (1, 5)) and one at an offset
        ("transposed", Tensor("shared", shared, 0, (5, 6), (1, 5))),
        ("slice", Tensor("shared", shared, 10, (2, 3), (3, 1))),
    ])


@pytest.mark.parametrize("layout", WRITERS)
def test_reading_gives_exact_arrays(tmp_path, layout):
    written = contents()
    WRITERS[layout](tmp_path / "w.pth", written)
    read = read_torch_file(tmp_path / "w.pth")
    assert isinstance(read, OrderedDict) and list(read) == list(written)
    shared = np.arange(30, dtype=np.float32)
    expected = {**written, "transposed": shared.reshape(6, 5).T, "slice": shared[10:16].reshape(2, 3)}
    for name, array in expected.items():
        assert read[name].dtype == array.dtype and read[name].shape == array.shape, name
        np.testing.assert_array_equal(read[name], array)
    assert read["bn.num_batches_tracked"].shape == ()


def test_a_nested_checkpoint_keeps_its_nesting_and_state_dict_finds_the_weights(tmp_path):
    weights = {"fc.weight": np.eye(3, dtype=np.float32)}
    write_legacy(tmp_path / "c.pth", {"epoch": 3, "state_dict": weights, "shapes": [(1, 2)]})
    read = read_torch_file(tmp_path / "c.pth")
    assert read["epoch"] == 3 and read["shapes"] == [(1, 2)]
    np.testing.assert_array_equal(state_dict(tmp_path / "c.pth")["fc.weight"], np.eye(3))


class RunsACommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def legacy_with(payload, path: Path) -> None:
    with open(path, "wb") as handle:
        for header in (LEGACY_MAGIC, 1001, {"little_endian": True}):
            pickle.dump(header, handle, protocol=2)
        pickle.dump(payload, handle, protocol=2)
        pickle.dump([], handle, protocol=2)


@pytest.mark.parametrize("where", ["legacy", "zip", "first pickle"])
def test_a_pickle_that_calls_code_is_refused_without_running_it(tmp_path, where):
    marker = tmp_path / "ran"
    evil = {"conv.weight": RunsACommand(marker)}
    path = tmp_path / "evil.pth"
    if where == "legacy":
        legacy_with(evil, path)
    elif where == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", pickle.dumps(evil, protocol=2))
    else:
        path.write_bytes(pickle.dumps(RunsACommand(marker)))
    with pytest.raises(UserError) as refused:
        read_torch_file(path)
    assert "holds code, not just tensors" in refused.value.message and "system" in refused.value.message
    assert "\n" not in refused.value.message
    assert not marker.exists()


def test_other_globals_are_refused_too(tmp_path):
    legacy_with({"x": np.float32(1.0)}, tmp_path / "numpy.pth")  # numpy's scalar reconstructor: still code
    with pytest.raises(UserError, match="holds code"):
        read_torch_file(tmp_path / "numpy.pth")


@pytest.mark.parametrize("data", [b"", b"not a pickle at all", pickle.dumps([1, 2, 3])])
def test_a_file_that_is_not_torch_save_is_one_clear_line(tmp_path, data):
    (tmp_path / "bad.pth").write_bytes(data)
    with pytest.raises(UserError, match="not a torch.save file"):
        read_torch_file(tmp_path / "bad.pth")


def test_a_truncated_file_is_one_clear_line(tmp_path):
    write_legacy(tmp_path / "w.pth", {"w": np.ones(100, np.float32)})
    data = (tmp_path / "w.pth").read_bytes()
    (tmp_path / "w.pth").write_bytes(data[:-10])
    with pytest.raises(UserError, match="ends inside a storage"):
        read_torch_file(tmp_path / "w.pth")


def test_no_module_of_seqtasks_imports_torch():
    importers = []
    for path in (ROOT / "seqtasks").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            importers += [str(path) for name in names if name.split(".")[0] == "torch"]
    assert not importers


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_files_written_by_torch_itself_read_exactly(layout):
    """tests/data/torch_written/*.pth were written by torch 2.13 (torch.save, both layouts) from
    x = arange(30).reshape(5, 6): {"t": x.t(), "s": x[1:3, 2:], "i": tensor(3), "h": bfloat16 [1.5, -2],
    "l": a (3, 2) Linear weight of 0.25}."""
    read = read_torch_file(ROOT / "tests" / "data" / "torch_written" / f"{layout}.pth")
    x = np.arange(30, dtype=np.float32).reshape(5, 6)
    np.testing.assert_array_equal(read["t"], x.T)
    np.testing.assert_array_equal(read["s"], x[1:3, 2:])
    assert read["i"].shape == () and read["i"] == 3 and read["i"].dtype == np.int64
    np.testing.assert_array_equal(read["h"], np.array([1.5, -2.0], np.float32))
    np.testing.assert_array_equal(read["l"], np.full((3, 2), 0.25, np.float32))
