"""Tokenizers (text <-> ids) and label vocabularies.

Three tokenizers share one interface and the same special ids (0 pad, 1 unk, 2 bos, 3 eos):

* ``spm``  - SentencePiece (unigram or bpe); lossless: ``decode(encode(t)) == t``.
* ``char`` - one id per character; lossless for characters seen in training.
* ``word`` - regex words and punctuation; lossy (decode puts single spaces between tokens).

A tokenizer is saved as a folder: the model file (``spm.model``, ``chars.json`` or ``words.json``)
plus ``tokenizer.json`` holding the kind and options. ``fingerprint()`` hashes exactly those bytes,
so it can key caches of encoded corpora.
"""
from __future__ import annotations

import abc
import collections
import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import sentencepiece

from seqtasks.errors import UserError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>")
KINDS = ("spm", "char", "word")
SPM_MODEL_TYPES = ("unigram", "bpe")
CONFIG_FILENAME = "tokenizer.json"
DEFAULT_VOCAB_SIZE = {"spm": 8000, "char": None, "word": 20000}

_WORD_PATTERN = re.compile(r"\w+|[^\w\s]|\n")
_DROPPED_ON_DECODE = frozenset((PAD_ID, BOS_ID, EOS_ID))
# SentencePiece skips training lines longer than max_sentence_length bytes; cutting long lines
# (4 bytes per char at most) keeps every line of a document-per-line corpus in training.
_SPM_MAX_LINE_CHARS = 8192
_SPM_MAX_SENTENCE_BYTES = 4 * _SPM_MAX_LINE_CHARS
# Beyond this many distinct characters (CJK corpora) covering every rare one wastes the
# vocabulary; byte fallback still round-trips them when enabled.
_SPM_MANY_CHARS = 4000
_SPM_BYTE_FALLBACK_MIN_VOCAB = 300


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary sibling then rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _json_bytes(value: object) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode("utf-8")


class Tokenizer(abc.ABC):
    """Text <-> ids. Special ids are identical in every implementation."""

    kind: str = ""
    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def __init__(self, lowercase: bool = False):
        self.lowercase = lowercase

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, specials included."""

    @abc.abstractmethod
    def encode(self, text: str) -> list[int]:
        """Ids of `text`, without BOS/EOS."""

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Ids of each text; implementations override this with a faster path."""
        return [self.encode(text) for text in texts]

    @abc.abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; pad/bos/eos are dropped wherever they are (EOS does not stop decoding)."""

    @abc.abstractmethod
    def id_to_token(self, i: int) -> str:
        """The token (piece, character or word) of id `i`."""

    @abc.abstractmethod
    def _model_files(self) -> dict[str, bytes]:
        """Filename -> contents of the model files (without tokenizer.json)."""

    def _options(self) -> dict[str, object]:
        return {"lowercase": self.lowercase}

    def _files(self) -> dict[str, bytes]:
        files = self._model_files()
        files[CONFIG_FILENAME] = _json_bytes({"kind": self.kind, "options": self._options()})
        return files

    def save(self, directory: str | Path) -> None:
        """Write the model file and tokenizer.json into `directory` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = self._files()
        # tokenizer.json goes last: its presence means the folder is complete.
        config = files.pop(CONFIG_FILENAME)
        for name, data in files.items():
            _write_atomically(directory / name, data)
        _write_atomically(directory / CONFIG_FILENAME, config)

    def fingerprint(self) -> str:
        """sha256 hex digest of what save() writes; equal fingerprints mean equal encodings."""
        digest = hashlib.sha256()
        for name, data in sorted(self._files().items()):
            digest.update(name.encode("utf-8") + b"\0" + str(len(data)).encode() + b"\0" + data)
        return digest.hexdigest()

    def _prepare(self, text: str) -> str:
        return text.lower() if self.lowercase else text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, lowercase={self.lowercase})"


class _ListVocabTokenizer(Tokenizer):
    """Shared code for tokenizers whose vocabulary is a list of tokens starting with the specials."""

    filename: str = ""

    def __init__(self, tokens: Sequence[str], lowercase: bool = False):
        super().__init__(lowercase)
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary must start with {SPECIAL_TOKENS}")
        self.tokens = list(tokens)
        self._ids = {token: i for i, token in enumerate(self.tokens)}
        # A text "<unk>" must not map to the UNK id by accident, nor "<s>" to BOS.
        for special in SPECIAL_TOKENS:
            self._ids.pop(special)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def id_to_token(self, i: int) -> str:
        return self.tokens[i]

    def _tokens_of(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids if i not in _DROPPED_ON_DECODE]

    def _model_files(self) -> dict[str, bytes]:
        return {self.filename: _json_bytes(self.tokens)}


class CharTokenizer(_ListVocabTokenizer):
    """One id per character. Lossless for characters seen in training; others become UNK."""

    kind = "char"
    filename = "chars.json"

    def encode(self, text: str) -> list[int]:
        ids = self._ids
        return [ids.get(char, UNK_ID) for char in self._prepare(text)]

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        get = self._ids.get
        if self.lowercase:
            texts = [text.lower() for text in texts]
        return [[get(char, UNK_ID) for char in text] for text in texts]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self._tokens_of(ids))


class WordTokenizer(_ListVocabTokenizer):
    """Words (``\\w+``), single punctuation marks and newlines; other whitespace is dropped.

    Lossy by nature: decode joins tokens with single spaces (none around newlines), so
    ``"Hello, world!"`` comes back as ``"Hello , world !"``.
    """

    kind = "word"
    filename = "words.json"

    def encode(self, text: str) -> list[int]:
        ids = self._ids
        return [ids.get(token, UNK_ID) for token in _WORD_PATTERN.findall(self._prepare(text))]

    def decode(self, ids: Iterable[int]) -> str:
        parts: list[str] = []
        previous = "\n"
        for token in self._tokens_of(ids):
            if token != "\n" and previous != "\n":
                parts.append(" ")
            parts.append(token)
            previous = token
        return "".join(parts)


class SentencePieceTokenizer(Tokenizer):
    """SentencePiece with identity normalization: ``decode(encode(t)) == t``.

    The one exception is a literal U+2581 (the piece boundary mark), which decodes as a space.
    """

    kind = "spm"
    filename = "spm.model"

    def __init__(self, model_proto: bytes, model_type: str = "unigram", lowercase: bool = False):
        super().__init__(lowercase)
        self.model_proto = bytes(model_proto)
        self.model_type = model_type
        self._processor = sentencepiece.SentencePieceProcessor(model_proto=self.model_proto)

    # The processor is a C++ object: pickle/copy the model bytes and rebuild it.
    def __getstate__(self) -> dict[str, object]:
        return {key: value for key, value in self.__dict__.items() if key != "_processor"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._processor = sentencepiece.SentencePieceProcessor(model_proto=self.model_proto)

    @property
    def vocab_size(self) -> int:
        return self._processor.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self._processor.encode(self._prepare(text))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if self.lowercase:
            texts = [text.lower() for text in texts]
        return self._processor.encode(list(texts), num_threads=os.cpu_count() or 1)

    def decode(self, ids: Iterable[int]) -> str:
        return self._processor.decode([int(i) for i in ids if i not in _DROPPED_ON_DECODE])

    def id_to_token(self, i: int) -> str:
        if not 0 <= i < self.vocab_size:
            raise IndexError(f"id {i} is out of range (vocab_size {self.vocab_size})")
        return self._processor.id_to_piece(i)

    def _options(self) -> dict[str, object]:
        return {"lowercase": self.lowercase, "model_type": self.model_type}

    def _model_files(self) -> dict[str, bytes]:
        return {self.filename: self.model_proto}


_TOKENIZER_CLASSES: dict[str, type[Tokenizer]] = {
    "spm": SentencePieceTokenizer, "char": CharTokenizer, "word": WordTokenizer}


def _capped_lines(texts: Iterable[str], max_lines: int, lowercase: bool) -> Iterator[str]:
    """Lines of `texts`, each keeping its trailing "\\n" if it had one, at most `max_lines`."""
    if isinstance(texts, str):  # one document passed bare: do not iterate its characters
        texts = [texts]
    count = 0
    for text in texts:
        if lowercase:
            text = text.lower()
        parts = text.split("\n")
        last = len(parts) - 1
        for index, part in enumerate(parts):
            if index == last and not part:
                break
            if count >= max_lines:
                return
            count += 1
            yield part + "\n" if index < last else part


def _empty_corpus_error() -> UserError:
    return UserError("the training text is empty", where=None,
                     fix="give the tokenizer a corpus with some non-whitespace text")


def _train_list_vocab(kind: str, lines: Iterator[str], vocab_size: int | None, lowercase: bool
                      ) -> Tokenizer:
    counts: collections.Counter[str] = collections.Counter()
    has_text = False
    for line in lines:
        counts.update(line if kind == "char" else _WORD_PATTERN.findall(line))
        has_text = has_text or bool(line.strip())
    if not has_text:
        raise _empty_corpus_error()
    for special in SPECIAL_TOKENS:  # a corpus saying "<unk>" must not duplicate a special
        counts.pop(special, None)
    # Descending frequency, then the token itself (for characters: the code point).
    ranked = sorted(counts, key=lambda token: (-counts[token], token))
    if vocab_size is not None:
        ranked = ranked[: vocab_size - len(SPECIAL_TOKENS)]
    cls = CharTokenizer if kind == "char" else WordTokenizer
    return cls(list(SPECIAL_TOKENS) + ranked, lowercase=lowercase)


def _spm_required_chars(char_counts: collections.Counter[str], coverage: float) -> int:
    """How many characters SentencePiece will insist on (its own coverage rule, mirrored)."""
    total = sum(char_counts.values())
    covered = required = 0
    for _, count in sorted(char_counts.items(), key=lambda item: (-item[1], item[0])):
        if covered >= coverage * total:
            break
        covered += count
        required += 1
    return required


def _train_spm(lines: Iterator[str], vocab_size: int, model_type: str, lowercase: bool
               ) -> SentencePieceTokenizer:
    char_counts: collections.Counter[str] = collections.Counter()
    # Spool lines to disk: the corpus may not fit in memory, and the options below (coverage,
    # minimum vocab size) depend on the characters, which are only known after one full pass.
    with tempfile.TemporaryFile() as spool:
        for line in lines:
            line = line.rstrip("\n")  # spm trains on lines; "\n" is a user-defined symbol
            if not line.strip():
                continue
            char_counts.update(line)
            for start in range(0, len(line), _SPM_MAX_LINE_CHARS):
                spool.write(line[start:start + _SPM_MAX_LINE_CHARS].encode("utf-8") + b"\n")
        if not char_counts:
            raise _empty_corpus_error()
        spool.seek(0)

        byte_fallback = vocab_size >= _SPM_BYTE_FALLBACK_MIN_VOCAB
        coverage = 0.9995 if len(char_counts) > _SPM_MANY_CHARS else 1.0
        # spm refuses a vocab smaller than specials + "\n" + bytes + every covered character;
        # raising it to that floor lets tiny corpora and tiny vocab sizes train anyway.
        meta_pieces = len(SPECIAL_TOKENS) + 1 + (256 if byte_fallback else 0)
        vocab_size = max(vocab_size, meta_pieces + _spm_required_chars(char_counts, coverage))
        model = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=(raw[:-1].decode("utf-8") for raw in spool),
            model_writer=model, vocab_size=vocab_size, model_type=model_type,
            # identity + no dummy prefix + kept whitespace: what makes decode(encode(t)) == t
            normalization_rule_name="identity", add_dummy_prefix=False, remove_extra_whitespaces=False,
            user_defined_symbols="\n",  # a str, not a list: the list form is CSV-quoted
            pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
            pad_piece="<pad>", unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>",
            unk_surface=SPECIAL_TOKENS[UNK_ID],
            hard_vocab_limit=False, byte_fallback=byte_fallback, character_coverage=coverage,
            max_sentence_length=_SPM_MAX_SENTENCE_BYTES, num_threads=os.cpu_count() or 1,
            minloglevel=2,  # no training log on stderr
        )
    tokenizer = SentencePieceTokenizer(model.getvalue(), model_type=model_type, lowercase=lowercase)
    newline_ids = tokenizer.encode("\n")
    if len(newline_ids) != 1 or tokenizer.decode(newline_ids) != "\n":
        raise RuntimeError(f"SentencePiece did not keep '\\n' as one piece: {newline_ids}")
    return tokenizer


def train_tokenizer(kind: str, texts: Iterable[str], *, vocab_size: int | None = None,
                    model_type: str = "unigram", lowercase: bool = False,
                    max_training_lines: int = 2_000_000) -> Tokenizer:
    """Train a tokenizer of `kind` ("spm", "char" or "word") on `texts`.

    `texts` is streamed once (a generator over a large corpus is fine); items may hold many
    lines. Only the first `max_training_lines` lines are used, for every kind. `vocab_size`
    counts the specials; defaults: spm 8000, char unlimited, word 20000. For spm it is a soft
    limit: raised to the minimum SentencePiece needs, and may end lower on small corpora.
    """
    if kind not in KINDS:
        raise UserError(f"unknown tokenizer kind {kind!r}", where=None, fix=f"use one of {', '.join(KINDS)}")
    if vocab_size is not None and vocab_size <= len(SPECIAL_TOKENS):
        raise UserError(f"vocab_size {vocab_size} is too small", where=None,
                        fix=f"use a vocab_size above {len(SPECIAL_TOKENS)} (the special tokens)")
    if vocab_size is None:
        vocab_size = DEFAULT_VOCAB_SIZE[kind]
    lines = _capped_lines(texts, max_training_lines, lowercase)
    if kind == "spm":
        if model_type not in SPM_MODEL_TYPES:
            raise UserError(f"unknown SentencePiece model type {model_type!r}", where=None,
                            fix=f"use one of {', '.join(SPM_MODEL_TYPES)}")
        return _train_spm(lines, vocab_size, model_type, lowercase)
    return _train_list_vocab(kind, lines, vocab_size, lowercase)


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Load a tokenizer saved by `Tokenizer.save`."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILENAME
    if not config_path.is_file():
        raise UserError("no tokenizer in this folder", where=str(directory),
                        fix=f"give the folder a tokenizer was saved to (it holds {CONFIG_FILENAME})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        kind = config["kind"]
        options = dict(config.get("options", {}))
        cls = _TOKENIZER_CLASSES[kind]
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{CONFIG_FILENAME} is damaged ({error})", where=str(config_path),
                        fix="train and save the tokenizer again") from error
    model_path = directory / cls.filename  # type: ignore[attr-defined]
    if not model_path.is_file():
        raise UserError(f"the {kind} tokenizer model file is missing", where=str(model_path),
                        fix="copy the whole tokenizer folder, or train and save the tokenizer again")
    lowercase = bool(options.get("lowercase", False))
    if cls is SentencePieceTokenizer:
        return SentencePieceTokenizer(model_path.read_bytes(),
                                      model_type=str(options.get("model_type", "unigram")),
                                      lowercase=lowercase)
    tokens = json.loads(model_path.read_text(encoding="utf-8"))
    return cls(tokens, lowercase=lowercase)  # type: ignore[call-arg]


class LabelVocabulary:
    """Label names <-> ids, for classification labels and tag sets. Saved as labels.json."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self._ids = {name: i for i, name in enumerate(self.names)}
        if len(self._ids) != len(self.names):
            raise ValueError(f"duplicate label names in {self.names}")

    @classmethod
    def from_examples(cls, labels: Iterable[str]) -> LabelVocabulary:
        """The sorted unique labels, so the same data always gives the same ids."""
        return cls(sorted(set(labels)))

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelVocabulary) and self.names == other.names

    def encode(self, name: str) -> int:
        """The id of label `name`; UserError if it was not seen in training."""
        try:
            return self._ids[name]
        except KeyError:
            known = ", ".join(repr(known) for known in self.names[:20])
            if len(self.names) > 20:
                known += f", ... ({len(self.names)} in all)"
            raise UserError(f"the label {name!r} was not seen in training", where=None,
                            fix=f"use one of the known labels: {known}") from None

    def decode(self, i: int) -> str:
        """The name of label id `i`."""
        return self.names[i]

    def save(self, directory: str | Path, filename: str = "labels.json") -> None:
        """Write the names as a JSON list to `directory`/`filename`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _write_atomically(directory / filename, _json_bytes(self.names))

    @classmethod
    def load(cls, directory: str | Path, filename: str = "labels.json") -> LabelVocabulary:
        """Read a vocabulary written by `save`; UserError if it is missing or damaged."""
        path = Path(directory) / filename
        if not path.is_file():
            raise UserError("no label vocabulary here", where=str(path),
                            fix="give the folder the labels were saved to")
        try:
            names = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise UserError(f"{filename} is damaged ({error})", where=str(path),
                            fix="train again to rewrite it") from error
        return cls(names)
