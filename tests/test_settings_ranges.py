"""Every numeric setting is range-checked before anything is made, from flags and TOML alike: one
line naming the flag, the value, the allowed range and where the value came from; exit 1."""
import dataclasses

import pytest
from click.testing import CliRunner

from seqtasks.cli import cli
from seqtasks.config import TrainConfig, allowed_range, in_range, resolve_config, setting_type
from seqtasks.errors import UserError
from seqtasks.tasks import task_classes

# (task, setting, bad value): the impossible settings of issue 16 and one of every kind of bound
BAD = [
    ("lm", "batch_size", 0), ("lm", "batch_size", -4), ("lm", "units", -16), ("lm", "units", 100_000_000),
    ("lm", "seq_len", 0), ("lm", "epochs", 0), ("lm", "epochs", -1), ("lm", "heads", 0), ("lm", "dropout", 1.5),
    ("lm", "steps_per_epoch", -3), ("lm", "lr", -0.001), ("lm", "max_time", -5.0), ("lm", "seed", -1),
    ("classify", "max_len", 0), ("classify", "layers", 0), ("tag", "word_dropout", 1.0),
    ("translate", "max_target_len", 1), ("translate", "label_smoothing", -0.1), ("translate", "beam", 0),
    ("caption", "crop_area", 0.0), ("caption", "cnn_blocks", 20), ("generate", "seq_len", -2),
    ("generate", "sample_examples", -1),
]


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@pytest.mark.parametrize("origin", ["flag", "toml"])
@pytest.mark.parametrize("task, name, value", BAD)
def test_an_out_of_range_setting_is_one_line_before_any_folder(task, name, value, origin, tmp_path):
    out = tmp_path / "run"
    # data that does not exist: if the check failed to fire, the run would stop at reading, not train
    data_flag = flag(task_classes()[task].data_settings[0])
    args = ["train", task, "--out", str(out), data_flag, str(tmp_path / "missing")]
    if origin == "flag":
        args += [flag(name), str(value)]
        where = "from the command line"
    else:
        config = tmp_path / "settings.toml"
        config.write_text(f"[model]\n{name} = {value!r}\n")
        args += ["--config", str(config)]
        where = f"from {config}"
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    line = lines[0]
    assert line.startswith("seqtasks: error: ") and "Traceback" not in result.output
    field = {f.name: f for f in dataclasses.fields(task_classes()[task].Config)}[name]
    shown = repr(setting_type(field.type)(value))
    assert f"{flag(name)} {shown} is out of range ({where}): give {allowed_range(field)}" in line
    assert not out.exists() and not list(tmp_path.glob(".*run*"))


def test_a_non_number_is_one_line_too(tmp_path):
    result = CliRunner().invoke(cli, ["train", "lm", "--units", "many", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "seqtasks: error: --units must be an integer, got 'many' (from the command line): give --units an integer"]


def test_not_a_number_and_infinity_are_out_of_range():
    for value in ("nan", "inf"):
        with pytest.raises(UserError, match="--lr .* is out of range"):
            resolve_config(TrainConfig, {}, {"lr": value})


def test_every_numeric_setting_of_every_task_has_a_range_its_default_satisfies():
    for name, task in task_classes().items():
        for f in dataclasses.fields(task.Config):
            if setting_type(f.type) in (int, float):
                meta = f.metadata
                assert any(meta.get(k) is not None for k in ("minimum", "above")), (name, f.name)
                assert any(meta.get(k) is not None for k in ("maximum", "below")), (name, f.name)
                assert f.default is None or in_range(f, f.default), (name, f.name, f.default)
