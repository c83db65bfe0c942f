"""--pretrained-embeddings: fill a new model's token embedding rows from word vectors, and read a run's
own table back as word vectors (`seqtasks embeddings RUN`).

    E[i] = v(token_i)                 when the vectors have token_i (lowercased, when they are uncased)
    E[i] ~ N(0, σ²), σ = std(v)       otherwise: random rows at the vectors' own scale

A model names its tables with `token_tables() -> {"tokens" | "source" | "target": Embedding}`; the
preprocessor gives each its vocabulary (a Tokenizer; an InputEncoder's `.tokenizer`; a
TranslationVocab's `.source` / `.target`). Only word vocabularies take vectors (tokenizer word or
whitespace): a subword or character table cannot be filled by words.

The embedding width must equal the vectors' dimension. A mismatch is one line naming the flag that
sets the width (--embedding-dim for recurrent models, --units for Transformers, whose tables are
d_model wide), not a silent projection: a learned projection of frozen vectors would be a new layer
every saved model would need, and the width is one flag away.

--freeze-embeddings takes the filled tables out of the trainable set (a Transformer whose output is
tied to its table then keeps the output fixed too); resume applies it again (`freeze_tables`).
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np

from seqtasks.errors import UserError
from seqtasks.tokenizers import SPECIAL_TOKENS
from seqtasks.word_vectors import WordVectors, read_vectors

WORD_KINDS = ("word", "whitespace")


def vocabularies(prep: Any) -> dict[str, Any]:
    """{table role: tokenizer} of a task's preprocessor."""
    if hasattr(prep, "source") and hasattr(prep, "target"):  # a TranslationVocab
        return {"source": prep.source, "target": prep.target}
    return {"tokens": getattr(prep, "tokenizer", prep)}  # an InputEncoder, or a Tokenizer itself


def tables_and_tokens(model: keras.Model, prep: Any) -> list[tuple[str, keras.layers.Embedding, Any]]:
    """(role, table, tokenizer) of each distinct token table of the model; a shared table's role
    names both sides ("source and target")."""
    if not hasattr(model, "token_tables"):
        raise UserError("this model has no token embedding table to fill", fix="drop --pretrained-embeddings")
    tokenizers = vocabularies(prep)
    roles: dict[int, list[str]] = {}
    tables = {}
    for role, table in model.token_tables().items():
        roles.setdefault(id(table), []).append(role)
        tables[id(table)] = table
    return [(" and ".join(names), tables[key], tokenizers[names[0]]) for key, names in roles.items()]


def check_width(table: keras.layers.Embedding, vectors: WordVectors) -> None:
    width = int(table.output_dim)
    if width != vectors.dim:
        raise UserError(f"the word vectors are {vectors.dim}-dimensional but the embedding table is {width} wide",
                        vectors.source, f"set the width to {vectors.dim}: --embedding-dim {vectors.dim} "
                        f"(recurrent models) or --units {vectors.dim} (Transformers)")


def initialise_embeddings(model: keras.Model, prep: Any, cfg, verbose: int = 1) -> dict[str, dict[str, int]]:
    """Fill the model's token tables from cfg.pretrained_embeddings; {role: {"covered", "random"}}."""
    entries = tables_and_tokens(model, prep)
    for role, _, tokenizer in entries:
        if tokenizer.kind not in WORD_KINDS:
            raise UserError(f"--pretrained-embeddings needs a word vocabulary; this {role} tokenizer is "
                            f"{tokenizer.kind!r}", cfg.pretrained_embeddings, "add --tokenizer word")
    wanted = {token for _, _, tokenizer in entries for token in tokenizer.tokens[len(SPECIAL_TOKENS):]}
    vectors = read_vectors(cfg.pretrained_embeddings, wanted)
    counts = {}
    rng = np.random.default_rng(cfg.seed)
    scale = float(vectors.matrix.std()) if len(vectors) else 0.05
    for role, table, tokenizer in entries:
        check_width(table, vectors)
        tokens = tokenizer.tokens
        weights = rng.normal(0.0, scale, (len(tokens), vectors.dim)).astype(np.float32)
        covered = 0
        for i, token in enumerate(tokens[len(SPECIAL_TOKENS):], len(SPECIAL_TOKENS)):
            vector = vectors.vector(token)
            if vector is not None:
                weights[i], covered = vector, covered + 1
        table.embeddings.assign(weights.astype(keras.backend.standardize_dtype(table.embeddings.dtype)))
        counts[role] = {"covered": covered, "random": len(tokens) - len(SPECIAL_TOKENS) - covered}
        if verbose:
            words = len(tokens) - len(SPECIAL_TOKENS)
            cased = " (looked up lowercased: the vectors are uncased)" if vectors.uncased else ""
            print(f"pretrained embeddings ({role}): {covered:,} of {words:,} words from {vectors.source}{cased}, "
                  f"{words - covered:,} random{'; frozen' if cfg.freeze_embeddings else ''}", flush=True)
    if cfg.freeze_embeddings:
        freeze_tables(model)
    return counts


def freeze_tables(model: keras.Model) -> None:
    for table in model.token_tables().values():
        table.trainable = False


def run_vectors(model: keras.Model, prep: Any, source: str) -> WordVectors:
    """A trained run's own first token table as word vectors (its special tokens left out)."""
    role, table, tokenizer = tables_and_tokens(model, prep)[0]
    tokens = [tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)]
    matrix = np.asarray(keras.ops.convert_to_numpy(table.embeddings), np.float32)[len(SPECIAL_TOKENS):len(tokens)]
    return WordVectors(tokens[len(SPECIAL_TOKENS):], matrix, bool(tokenizer.lowercase), f"{source} ({role} table)")
