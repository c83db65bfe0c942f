"""Tokenizers (text <-> ids) and label vocabularies.

Four tokenizers share one interface and the same special ids (0 pad, 1 unk, 2 bos, 3 eos):

* ``spm``  - SentencePiece (unigram or bpe); lossless: ``decode(encode(t)) == t``.
* ``char`` - one id per character; lossless for characters seen in training.
* ``word`` - regex words and punctuation; lossy (decode puts single spaces between tokens).
* ``whitespace`` - text already tokenized, one sentence a line (Penn Treebank style): a token is a
  run of non-space characters, each line ends with the end-of-sentence id, and a literal ``<unk>``
  is the unknown token. Perplexity over these ids is the literature's per-word perplexity.

``encode_flat`` encodes many texts at once into one id array (the char tokenizer through a lookup
table on code points, word and whitespace through ``str.split`` and one dictionary look-up per
distinct token); ``split_point`` tells where a long text may be cut without changing its ids, so
a corpus can be encoded in bounded pieces whatever its line structure.

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
from itertools import chain, repeat
from pathlib import Path

import numpy as np
import sentencepiece

from seqtasks.bulk_tokens import OTHER, NEWLINE, WORD, PackedVocabulary, character_classes, code_points, token_spans
from seqtasks.errors import UserError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>")
KINDS = ("spm", "char", "word", "whitespace")
SPM_MODEL_TYPES = ("unigram", "bpe")
CONFIG_FILENAME = "tokenizer.json"
# whitespace: pre-tokenized text comes with its vocabulary fixed (PTB: 10k words), so all of it
DEFAULT_VOCAB_SIZE = {"spm": 8000, "char": None, "word": 20000, "whitespace": None}
# A text with no safe cut point is cut anyway past this many characters (see split_point).
MAX_UNCUT_CHARS = 1 << 20

_WORD_PATTERN = re.compile(r"\w+|[^\w\s]|\n")
# Where a text may be cut: before the trailing run of characters a token could still continue.
_TRAILING_WORD = re.compile(r"\w*\Z")
_TRAILING_NON_SPACE = re.compile(r"\S*\Z")
_TRAILING_NON_BLANK = re.compile(r"[^ \n]*\Z")
_DROPPED_ON_DECODE = frozenset((PAD_ID, BOS_ID, EOS_ID))
# SentencePiece skips training lines longer than max_sentence_length bytes; cutting long lines
# (4 bytes per char at most) keeps every line of a document-per-line corpus in training.
_SPM_MAX_LINE_CHARS = 8192
_SPM_MAX_SENTENCE_BYTES = 4 * _SPM_MAX_LINE_CHARS
# SentencePiece keeps every training sentence in memory (about 20 bytes a character at its peak):
# past this many characters it trains on an evenly drawn sample of the lines.
_SPM_MAX_TRAINING_CHARS = 40_000_000
_SPM_MAX_TRAINING_SENTENCES = 2_000_000
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

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The ids of all `texts` end to end (int32) and how many of them each text has.

        Equal to flattening encode_batch(texts); the list tokenizers compute it in bulk.
        """
        encoded = self.encode_batch(list(texts))
        counts = np.fromiter(map(len, encoded), np.int64, len(encoded))
        return np.fromiter(chain.from_iterable(encoded), np.int32, int(counts.sum())), counts

    def split_point(self, text: str) -> int:
        """The last place `text` may be cut so that its two parts encode to the ids of the whole
        (0: nowhere). Lines are always safe to encode apart; this is for pieces of one line."""
        return split_point(self.kind, text)

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

    def _prepare_all(self, texts: Sequence[str]) -> Sequence[str]:
        return [text.lower() for text in texts] if self.lowercase else texts

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, lowercase={self.lowercase})"


class _ListVocabTokenizer(Tokenizer):
    """Shared code for tokenizers whose vocabulary is a list of tokens starting with the specials."""

    filename: str = ""
    _packed_vocabulary: PackedVocabulary | None = None  # built at the first encode

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

    def _packed(self) -> PackedVocabulary:
        if self._packed_vocabulary is None:
            self._packed_vocabulary = PackedVocabulary(list(self._ids), list(self._ids.values()))
        return self._packed_vocabulary

    def encode(self, text: str) -> list[int]:
        return self.encode_flat([text])[0].tolist()

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        ids, counts = self.encode_flat(texts)
        return [part.tolist() for part in np.split(ids, np.cumsum(counts)[:-1])] if texts else []


def _lines_of(text: str) -> list[str]:
    """`text` cut after each "\\n" (only there, unlike str.splitlines); [""] for an empty text."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    if not lines[-1] and len(lines) > 1:
        lines.pop()
    return lines


def _spans_and_ids(texts: Sequence[str], vocabulary: PackedVocabulary, whitespace: bool
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ids of the tokens of `texts` (word or whitespace rules), their first code points, and how
    many each text has."""
    joined = " ".join(texts)  # a space between texts: no token crosses it
    codes = code_points(joined)
    classes = character_classes(codes)
    if whitespace:
        starts, ends = token_spans((classes == WORD) | (classes == OTHER), classes == NEWLINE)
    else:
        starts, ends = token_spans(classes == WORD, classes >= NEWLINE)
    ids = vocabulary.lookup(joined, codes, starts, ends, UNK_ID)
    lengths = np.fromiter(map(len, texts), np.int64, len(texts))
    offsets = np.cumsum(lengths + 1) - lengths - 1
    counts = np.diff(np.append(np.searchsorted(starts, offsets), len(starts)))
    return ids, codes[starts], counts


class CharTokenizer(_ListVocabTokenizer):
    """One id per character. Lossless for characters seen in training; others become UNK."""

    kind = "char"
    filename = "chars.json"
    _table: np.ndarray | None = None

    def _lookup_table(self) -> np.ndarray:
        """Code point -> id for every code point up to the highest known one, then UNK (the last
        entry, where every higher code point is clipped to)."""
        if self._table is None:
            top = max((ord(char) for char in self._ids), default=0)
            table = np.full(top + 2, UNK_ID, np.int32)
            for char, i in self._ids.items():
                table[ord(char)] = i
            self._table = table
        return self._table

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        texts = self._prepare_all(texts)
        codes = code_points("".join(texts))
        table = self._lookup_table()
        ids = table[np.minimum(codes, len(table) - 1)]
        return ids, np.fromiter(map(len, texts), np.int64, len(texts))

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self._tokens_of(ids))


class WordTokenizer(_ListVocabTokenizer):
    """Words (``\\w+``), single punctuation marks and newlines; other whitespace is dropped.

    Lossy by nature: decode joins tokens with single spaces (none around newlines), so
    ``"Hello, world!"`` comes back as ``"Hello , world !"``.

    Encoding finds the regex's tokens and their ids in bulk (seqtasks.bulk_tokens); tests compare
    them with the regex's.
    """

    kind = "word"
    filename = "words.json"

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        ids, _, counts = _spans_and_ids(self._prepare_all(texts), self._packed(), whitespace=False)
        return ids.astype(np.int32), counts

    def decode(self, ids: Iterable[int]) -> str:
        parts: list[str] = []
        previous = "\n"
        for token in self._tokens_of(ids):
            if token != "\n" and previous != "\n":
                parts.append(" ")
            parts.append(token)
            previous = token
        return "".join(parts)


class WhitespaceTokenizer(_ListVocabTokenizer):
    """Text already tokenized, one sentence a line: a token is a run of non-space characters,
    every "\\n" is the end-of-sentence id (EOS), and a literal ``<unk>`` is the unknown id (PTB marks
    its out-of-vocabulary words so). Decode joins tokens with spaces and writes EOS as a line end.
    """

    kind = "whitespace"
    filename = "words.json"

    def __init__(self, tokens: Sequence[str], lowercase: bool = False):
        super().__init__(tokens, lowercase)
        self._ids[SPECIAL_TOKENS[UNK_ID]] = UNK_ID

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        ids, firsts, counts = _spans_and_ids(self._prepare_all(texts), self._packed(),
                                             whitespace=True)
        ids[firsts == ord("\n")] = EOS_ID
        return ids.astype(np.int32), counts

    def decode(self, ids: Iterable[int]) -> str:
        lines, words = [], []
        for i in ids:
            if i == EOS_ID:
                lines.append(" ".join(words) + "\n")
                words = []
            elif i not in _DROPPED_ON_DECODE:
                words.append(self.tokens[i])
        return "".join(lines) + " ".join(words)


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

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        # line by line, as the threads share the work by list item
        lines = [_lines_of(text) for text in texts]
        ids, line_counts = super().encode_flat(list(chain.from_iterable(lines)))
        ends = np.cumsum(np.fromiter(map(len, lines), np.int64, len(lines)))
        reach = np.concatenate([[0], np.cumsum(line_counts)])
        return ids, reach[ends] - reach[np.concatenate([[0], ends[:-1]])]

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
    "spm": SentencePieceTokenizer, "char": CharTokenizer, "word": WordTokenizer,
    "whitespace": WhitespaceTokenizer}


def split_point(kind: str, text: str) -> int:
    """Where a tokenizer of `kind` may cut `text`, a piece of one line, without changing its ids:
    char anywhere; word before a trailing run of word characters; whitespace after the last
    whitespace; spm before the last space (a piece starts at a space and never crosses one) or
    after the last line end.
    0 when there is no such place."""
    if kind == "char":
        return len(text)
    pattern = {"word": _TRAILING_WORD, "whitespace": _TRAILING_NON_SPACE}.get(kind, _TRAILING_NON_BLANK)
    # Look at the end first: searching a whole block for a trailing run is quadratic in the worst case.
    window = 256
    while True:
        start = max(len(text) - window, 0)
        cut = pattern.search(text, start).start()
        if cut > start or start == 0:
            break
        window *= 16
    if kind == "spm" and cut and text[cut - 1] == " ":
        return cut - 1  # before the space: it begins the next piece
    return cut


def safe_pieces(pieces: Iterable[tuple[str, bool]], kind: str) -> Iterator[tuple[str, bool]]:
    """Re-cut a stream of (text, ends_document) pieces, cut anywhere, so that every cut inside a
    line falls at a `split_point` of `kind`: encoding the pieces apart gives the ids of encoding
    them whole. A tail with no such point is carried into the next piece, up to MAX_UNCUT_CHARS
    (a longer run without a space is cut there, so memory stays bounded)."""
    carry = ""
    for text, ends_document in pieces:
        text = carry + text if carry else text
        carry = ""
        if ends_document or text.endswith("\n"):
            yield text, ends_document
            continue
        cut = split_point(kind, text)
        if cut == 0 and len(text) < MAX_UNCUT_CHARS:
            carry = text
            continue
        cut = cut or len(text)
        if cut:
            yield text[:cut], False
        carry = text[cut:]
    if carry:
        yield carry, False


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
    newlines = 0
    for line in lines:
        # word and whitespace count whitespace-separated chunks; word splits the distinct ones below
        counts.update(line if kind == "char" else line.split())
        newlines += line.count("\n")
        has_text = has_text or bool(line.strip())
    if not has_text:
        raise _empty_corpus_error()
    if kind == "word":
        chunks, counts = counts, collections.Counter()
        for chunk, count in chunks.items():
            for token in _WORD_PATTERN.findall(chunk):
                counts[token] += count
        if newlines:
            counts["\n"] = newlines
    for special in SPECIAL_TOKENS:  # a corpus saying "<unk>" must not duplicate a special
        counts.pop(special, None)
    # Descending frequency, then the token itself (for characters: the code point).
    ranked = sorted(counts, key=lambda token: (-counts[token], token))
    if vocab_size is not None:
        ranked = ranked[: vocab_size - len(SPECIAL_TOKENS)]
    cls = _TOKENIZER_CLASSES[kind]
    return cls(list(SPECIAL_TOKENS) + ranked, lowercase=lowercase)  # type: ignore[call-arg]


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


def _spm_sentences(line: str) -> list[str]:
    """`line` in pieces of at most _SPM_MAX_LINE_CHARS characters, cut before a space if it has one."""
    pieces = []
    while len(line) > _SPM_MAX_LINE_CHARS:
        cut = line.rfind(" ", 1, _SPM_MAX_LINE_CHARS + 1)
        cut = cut if cut > 0 else _SPM_MAX_LINE_CHARS
        pieces.append(line[:cut])
        line = line[cut:]
    pieces.append(line)
    return pieces


def _spm_sample_size(sentences: int, characters: int) -> int:
    """How many of the training sentences SentencePiece gets: all, unless there are too many."""
    by_characters = sentences * _SPM_MAX_TRAINING_CHARS // max(characters, 1)
    return max(1, min(sentences, _SPM_MAX_TRAINING_SENTENCES, by_characters))


def _spooled(spool, chosen: np.ndarray | None) -> Iterator[str]:
    """The spooled sentences, or only those whose index is in `chosen` (sorted)."""
    position = 0
    for index, raw in enumerate(spool):
        if chosen is not None:
            if position == len(chosen):
                return
            if chosen[position] != index:
                continue
            position += 1
        yield raw[:-1].decode("utf-8")


def _train_spm(lines: Iterator[str], vocab_size: int, model_type: str, lowercase: bool
               ) -> SentencePieceTokenizer:
    char_counts: collections.Counter[str] = collections.Counter()
    sentences = characters = cut_lines = 0
    # Spool lines to disk: the corpus may not fit in memory, and the options below (coverage,
    # minimum vocab size) depend on the characters, which are only known after one full pass.
    with tempfile.TemporaryFile() as spool:
        for line in lines:
            line = line.rstrip("\n")  # spm trains on lines; "\n" is a user-defined symbol
            if not line.strip():
                continue
            char_counts.update(line)
            pieces = _spm_sentences(line)
            cut_lines += len(pieces) > 1
            for piece in pieces:
                spool.write(piece.encode("utf-8") + b"\n")
            sentences += len(pieces)
            characters += len(line)
        if not char_counts:
            raise _empty_corpus_error()
        if cut_lines:
            print(f"note: {cut_lines:,} lines longer than {_SPM_MAX_LINE_CHARS:,} characters were cut at "
                  "spaces for SentencePiece training (it skips longer sentences)")
        keep = _spm_sample_size(sentences, characters)
        if keep < sentences:
            print(f"note: SentencePiece trains on {keep:,} of the {sentences:,} lines, drawn evenly "
                  f"(at most {_SPM_MAX_TRAINING_CHARS:,} characters, to bound its memory)")
        chosen = np.sort(np.random.default_rng(0).choice(sentences, keep, replace=False)) \
            if keep < sentences else None
        spool.seek(0)

        byte_fallback = vocab_size >= _SPM_BYTE_FALLBACK_MIN_VOCAB
        coverage = 0.9995 if len(char_counts) > _SPM_MANY_CHARS else 1.0
        # spm refuses a vocab smaller than specials + "\n" + bytes + every covered character;
        # raising it to that floor lets tiny corpora and tiny vocab sizes train anyway.
        meta_pieces = len(SPECIAL_TOKENS) + 1 + (256 if byte_fallback else 0)
        vocab_size = max(vocab_size, meta_pieces + _spm_required_chars(char_counts, coverage))
        model = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=_spooled(spool, chosen), input_sentence_size=max(keep, 101),  # spm: 0 or > 100
            shuffle_input_sentence=False,  # sampled above, reproducibly
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
    lines (pieces of one long line: cut them with `safe_pieces`). Only the first
    `max_training_lines` lines are used, for every kind. `vocab_size` counts the specials;
    defaults: spm 8000, char, whitespace unlimited, word 20000. For spm it is a soft limit: raised to
    the minimum SentencePiece needs, and may end lower on small corpora. SentencePiece trains on
    an even sample of the lines of a corpus of more than 40M characters.
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
