"""Tests for seqtasks.readers: resolving corpora, streaming lines, checks and tfds sources."""
from __future__ import annotations

import gzip
import hashlib
import socket
from pathlib import Path

import pytest

from seqtasks.errors import UserError
from seqtasks.readers.text import HEAD_BYTES, TextSource, open_text_file, open_text_source


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


# --- resolving the spec --------------------------------------------------------------------


def test_single_file_keeps_newlines_and_marks_the_document_end(tmp_path: Path) -> None:
    path = write(tmp_path / "corpus.txt", "one\ntwo\nthree")
    source = open_text_source(str(path))
    assert source.paths == (path,)
    assert list(source.lines()) == [("one\n", False), ("two\n", False), ("three", True)]
    assert list(source.documents()) == ["one\ntwo\nthree"]


def test_folder_is_recursive_sorted_and_skips_hidden(tmp_path: Path) -> None:
    write(tmp_path / "b.txt", "b1\nb2\n")
    write(tmp_path / "a.txt", "a1\n")
    write(tmp_path / "sub" / "c.txt", "c1\n")
    write(tmp_path / ".hidden.txt", "secret\n")
    write(tmp_path / ".git" / "objects.txt", "secret\n")
    source = open_text_source(str(tmp_path))
    assert [p.relative_to(tmp_path).as_posix() for p in source.paths] == ["a.txt", "b.txt", "sub/c.txt"]
    # One document per file: each file's last line ends a document.
    assert list(source.lines()) == [("a1\n", True), ("b1\n", False), ("b2\n", True), ("c1\n", True)]
    assert list(source.documents()) == ["a1\n", "b1\nb2\n", "c1\n"]


def test_doc_per_line_makes_every_line_a_document(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "x\ny\n")
    write(tmp_path / "b.txt", "z")
    source = open_text_source(str(tmp_path), doc_per_line=True)
    assert list(source.lines()) == [("x\n", True), ("y\n", True), ("z", True)]


def test_glob_recursive_and_sorted(tmp_path: Path) -> None:
    write(tmp_path / "data" / "z.txt", "z\n")
    write(tmp_path / "data" / "deep" / "a.txt", "a\n")
    write(tmp_path / "data" / "notes.md", "not matched\n")
    source = open_text_source(str(tmp_path / "data" / "**" / "*.txt"))
    assert source.paths == tuple(sorted([tmp_path / "data" / "z.txt", tmp_path / "data" / "deep" / "a.txt"]))
    assert [line for line, _ in source.lines()] == ["a\n", "z\n"]


def test_gz_round_trip(tmp_path: Path) -> None:
    text = "héllo wörld\r\nsecond line\n"
    path = tmp_path / "corpus.txt.gz"
    with gzip.open(path, "wb") as stream:
        stream.write(b"\xef\xbb\xbf" + text.encode("utf-8"))
    source = open_text_source(str(path))
    assert list(source.lines()) == [("héllo wörld\n", False), ("second line\n", True)]
    with open_text_file(path) as stream:
        assert stream.read() == "héllo wörld\nsecond line\n"


def test_crlf_normalised_and_bom_stripped(tmp_path: Path) -> None:
    path = write(tmp_path / "win.txt", b"\xef\xbb\xbfone\r\ntwo\r\n")
    assert list(open_text_source(str(path)).lines()) == [("one\n", False), ("two\n", True)]


# --- describe and fingerprint --------------------------------------------------------------


def test_describe_hashes_the_bytes_in_order(tmp_path: Path) -> None:
    first = write(tmp_path / "a.txt", b"alpha\n")
    second = write(tmp_path / "b.txt", b"beta\n")
    info = open_text_source(str(tmp_path)).describe()
    assert info == {
        "source": str(tmp_path),
        "files": [str(first), str(second)],
        "bytes": 11,
        "sha256": hashlib.sha256(b"alpha\nbeta\n").hexdigest(),
    }


def test_fingerprint_follows_content_and_options(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "alpha\n")
    before = open_text_source(str(path)).fingerprint()
    assert open_text_source(str(path)).fingerprint() == before  # stable
    assert open_text_source(str(path), doc_per_line=True).fingerprint() != before
    write(path, "alphb\n")
    assert open_text_source(str(path)).fingerprint() != before


def test_fingerprint_sees_file_boundaries(tmp_path: Path) -> None:
    # Same bytes, but split into two documents instead of one.
    write(tmp_path / "one" / "a.txt", "x\ny\n")
    write(tmp_path / "two" / "a.txt", "x\n")
    write(tmp_path / "two" / "b.txt", "y\n")
    assert open_text_source(str(tmp_path / "one")).fingerprint() != open_text_source(str(tmp_path / "two")).fingerprint()


# --- user errors ---------------------------------------------------------------------------


def raises_user_error(spec: str, **kwargs) -> UserError:
    with pytest.raises(UserError) as caught:
        open_text_source(spec, **kwargs)
    return caught.value


def test_missing_path(tmp_path: Path) -> None:
    error = raises_user_error(str(tmp_path / "nope.txt"))
    assert "no such file or folder" in error.what
    assert error.where == str(tmp_path / "nope.txt")
    assert error.fix


def test_glob_without_match(tmp_path: Path) -> None:
    spec = str(tmp_path / "*.txt")
    error = raises_user_error(spec, role="validation data")
    assert "matches no files" in error.what and "validation data" in error.what
    assert error.where == spec


def test_folder_without_visible_files(tmp_path: Path) -> None:
    write(tmp_path / ".only_hidden", "x\n")
    error = raises_user_error(str(tmp_path))
    assert "holds no files" in error.what and error.where == str(tmp_path)


def test_binary_file(tmp_path: Path) -> None:
    path = write(tmp_path / "model.bin", b"abc\x00\x01\x02")
    error = raises_user_error(str(tmp_path))
    assert "looks binary" in error.what
    assert error.where == str(path)


def test_latin1_file_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "latin.txt", "ok\nfine\ncaf\xe9\n".encode("latin-1"))
    error = raises_user_error(str(path))
    assert "UTF-8" in error.what
    assert error.where == f"{path}, line 3"
    assert "iconv -f LATIN1 -t UTF-8" in error.fix


def test_bad_utf8_after_the_checked_head_fails_while_streaming(tmp_path: Path) -> None:
    good = b"abcdefghi\n" * (HEAD_BYTES // 10 + 1000)
    path = write(tmp_path / "late.txt", good + b"caf\xe9\n")
    source = open_text_source(str(path))  # the head is fine
    with pytest.raises(UserError) as caught:
        for _ in source.lines():
            pass
    bad_line = good.count(b"\n") + 1
    assert caught.value.where == f"{path}, line {bad_line}"


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.txt", b"")
    error = raises_user_error(str(path), role="validation data")
    assert error.what == "the validation data is empty"
    assert error.where == str(path)


def test_whitespace_only_folder_is_empty(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", " \n\n")
    write(tmp_path / "b.txt", b"")
    error = raises_user_error(str(tmp_path))
    assert error.what == "the training data is empty" and error.where == str(tmp_path)


def test_blank_file_longer_than_the_head_fails_while_streaming(tmp_path: Path) -> None:
    path = write(tmp_path / "blank.txt", "\n" * (HEAD_BYTES + 10))
    source = open_text_source(str(path))  # too long to be sure at open time
    with pytest.raises(UserError, match="is empty"):
        list(source.lines())


def test_broken_gz(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.txt.gz", b"plain text, not gzip\n")
    error = raises_user_error(str(path))
    assert "gzip" in error.what and error.where == str(path)


# --- tfds ----------------------------------------------------------------------------------

TINY_TEXTS = ["the first document", "second document\r\nwith two lines", "third"]


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny tfds dataset prepared locally (no network), shared by the tfds tests."""
    tf = pytest.importorskip("tensorflow")
    tfds = pytest.importorskip("tensorflow_datasets")
    data_dir = tmp_path_factory.mktemp("tfds")

    class TinyBuilder(tfds.dataset_builders.TfDataBuilder, skip_registration=True):
        # tfds looks up a checksums file next to the builder's code, which needs the optional
        # importlib_resources package; this builder has no code file and downloads nothing.
        code_path = None

    builder = TinyBuilder(
        name="seqtasks_tiny_text",
        version="1.0.0",
        features=tfds.features.FeaturesDict(
            {"label": tfds.features.ClassLabel(num_classes=2), "text": tfds.features.Text()}
        ),
        split_datasets={
            "train": tf.data.Dataset.from_tensor_slices({"label": [0, 1, 0], "text": TINY_TEXTS}),
        },
        data_dir=str(data_dir),
    )
    builder.download_and_prepare()
    return data_dir


def test_tfds_source_yields_its_texts(tfds_dir: Path) -> None:
    source = open_text_source("tfds:seqtasks_tiny_text:train", data_dir=str(tfds_dir))
    assert source.paths == () and source.tfds_text_key == "text" and source.tfds_split == "train"
    assert list(source.documents()) == ["the first document", "second document\nwith two lines", "third"]
    assert list(source.lines())[1:3] == [("second document\n", False), ("with two lines", True)]
    info = source.describe()
    assert info["name"] == "seqtasks_tiny_text" and info["num_examples"] == 3 and "sha256" not in info
    assert source.fingerprint() == open_text_source("tfds:seqtasks_tiny_text", data_dir=str(tfds_dir)).fingerprint()


def test_tfds_split_slicing_and_env_data_dir(tfds_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
    source = open_text_source("tfds:seqtasks_tiny_text:train[:1]")
    assert list(source.documents()) == ["the first document"]
    assert source.describe()["num_examples"] == 1


def test_tfds_unknown_text_key_lists_features(tfds_dir: Path) -> None:
    error = raises_user_error("tfds:seqtasks_tiny_text", data_dir=str(tfds_dir), text_key="body")
    assert "label" in error.what and "text" in error.what and "--text-key" in error.fix


def test_tfds_unknown_split(tfds_dir: Path) -> None:
    error = raises_user_error("tfds:seqtasks_tiny_text:test", data_dir=str(tfds_dir))
    assert "test" in error.what and error.where == "tfds:seqtasks_tiny_text:test"


def test_tfds_unknown_name_needs_no_network(tfds_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("the reader tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    for name in ("seqtasks_no_such_dataset", "mnist"):  # unregistered, and registered but absent
        error = raises_user_error(f"tfds:{name}", data_dir=str(tfds_dir))
        assert "not found" in error.what and str(tfds_dir) in error.what
        assert f"tfds build {name}" in error.fix and "--tfds-dir" in error.fix


def test_tfds_missing_data_dir(tmp_path: Path) -> None:
    error = raises_user_error("tfds:seqtasks_tiny_text", data_dir=str(tmp_path / "nowhere"))
    assert "does not exist" in error.what and error.where == str(tmp_path / "nowhere")


def test_text_source_is_frozen(tmp_path: Path) -> None:
    source = open_text_source(str(write(tmp_path / "a.txt", "a\n")))
    assert isinstance(source, TextSource)
    with pytest.raises(AttributeError):
        source.spec = "other"  # type: ignore[misc]
