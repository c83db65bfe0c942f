"""The lm task's card: its settings and what `seqtasks tasks` and `seqtasks train lm --help` show.

It imports no TensorFlow, so that help answers at once; the task itself is tasks/lm.py.
"""
from __future__ import annotations

import dataclasses

from seqtasks.choices import ACTIVATIONS, RECURRENT_CELLS, SMOOTHINGS, recurrent_cell
from seqtasks.config import TrainConfig, check_heads_divide_units, setting
from seqtasks.encoder_settings import freeze_embeddings_setting, pretrained_embeddings_setting
from seqtasks.tasks.base import TaskCard


@dataclasses.dataclass
class LanguageModelConfig(TrainConfig):
    data: str = setting("", "training text: a file, folder, glob, .gz, or tfds:NAME[:SPLIT]", path="data")
    valid: str = setting("", "validation text; default: the last --valid-fraction of the training text", path="data")
    valid_fraction: float = setting(0.05, "share of the training text held out when --valid is not given",
                                    minimum=0.0, below=1.0)
    doc_per_line: bool = setting(False, "each line is a document (default: each file is one)")
    text_key: str = setting("", "tfds sources: the feature holding the text")
    tfds_dir: str = setting("", "tfds sources: the data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)",
                            path="place")
    arch: str = setting("lstm", "model family (ngram: counted, no training loop)",
                        ("rnn", "gru", "lstm", "transformer", "ngram"))
    cell: str = setting("auto", "rnn/gru/lstm: the recurrent cell; auto = the one --arch names; lstm-peephole "
                        "(with --arch lstm): gates that also see the cell state", ("auto", *RECURRENT_CELLS))
    tokenizer: str = setting("char", "char, SentencePiece subwords (spm), words, or whitespace: text already "
                             "tokenized, one sentence a line (perplexity per word)", ("char", "spm", "word", "whitespace"))
    vocab_size: int = setting(0, "tokenizer vocabulary size; 0 = the tokenizer's default (spm 8000)",
                              minimum=0, maximum=1_000_000)
    spm_model_type: str = setting("unigram", "SentencePiece algorithm", ("unigram", "bpe"))
    layers: int = setting(2, "recurrent layers or Transformer blocks", minimum=1, maximum=64)
    units: int = setting(256, "hidden units (recurrent) or d_model (Transformer)", minimum=1, maximum=8192)
    heads: int = setting(4, "attention heads (Transformer)", minimum=1, maximum=256)
    positions: str = setting("learned", "Transformer position encoding", ("learned", "sinusoidal"))
    activation: str = setting("gelu", "Transformer feed-forward nonlinearity (relu trains fastest on a CPU)",
                              ACTIVATIONS)
    seq_len: int = setting(128, "tokens per training window (the Transformer's context)", minimum=1, maximum=65536)
    unroll: bool = setting(False, "rnn/gru/lstm: unroll the time loop (faster CPU steps, slower first compile)")
    order: int = setting(5, "ngram: tokens per n-gram (the context is order - 1 tokens)", minimum=1, maximum=20)
    smoothing: str = setting("kneser-ney", "ngram: interpolated modified Kneser-Ney, Witten-Bell, or add-k",
                             SMOOTHINGS)
    discount: float = setting(0.0, "ngram kneser-ney: one discount for every count (original KN); 0 = modified "
                              "KN's three per order, estimated from the counts of counts", minimum=0.0, maximum=1.0)
    add_k: float = setting(1.0, "ngram add-k: the k added to every count", above=0.0, maximum=1e6)
    sample_tokens: int = setting(200, "tokens sampled after each epoch to show progress; 0 = none",
                                 minimum=0, maximum=100_000)
    embedding_dim: int = setting(0, "rnn/gru/lstm: token embedding width; 0 = --units", minimum=0, maximum=8192)
    pretrained_embeddings: str = pretrained_embeddings_setting()
    freeze_embeddings: bool = freeze_embeddings_setting()


class LanguageModelCard(TaskCard):
    name = "lm"
    description = "language modeling: raw text -> perplexity and bits per character; sample text"
    Config = LanguageModelConfig
    architectures = ("rnn", "gru", "lstm", "transformer", "ngram")
    example = "seqtasks train lm --data corpus.txt --arch transformer --max-time 20 --out runs/lm"

    def check_settings(self, cfg) -> None:
        check_heads_divide_units(cfg)
        recurrent_cell(cfg.arch, cfg.cell)  # --cell must fit --arch
