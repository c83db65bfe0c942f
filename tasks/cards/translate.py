"""The translate task's card: its settings and what `seqtasks tasks` and `seqtasks train translate --help` show.

It imports no TensorFlow, so that help answers at once; the task itself is tasks/translate.py.
"""
from __future__ import annotations

import dataclasses

from seqtasks.choices import ATTENTION_KINDS
from seqtasks.config import TrainConfig, check_heads_divide_units, setting
from seqtasks.encoder_settings import freeze_embeddings_setting, pretrained_embeddings_setting
from seqtasks.errors import UserError
from seqtasks.tasks.base import TaskCard


@dataclasses.dataclass
class TranslationConfig(TrainConfig):
    src: str = setting("", "training source sentences, one per line (.gz accepted)", path="data")
    tgt: str = setting("", "training target sentences: line i translates line i of --src", path="data")
    data: str = setting("", "training pairs instead of --src/--tgt: a TSV (source<TAB>target) or tfds:NAME[:SPLIT]",
                        path="data")
    valid_src: str = setting("", "validation source sentences", path="data")
    valid_tgt: str = setting("", "validation target sentences", path="data")
    valid: str = setting("", "validation pairs as a TSV or tfds:NAME:SPLIT; default: --valid-fraction of the "
                             "training pairs", path="data")
    valid_fraction: float = setting(0.02, "share of the training pairs held out when no validation data is given",
                                    minimum=0.0, below=1.0)
    src_lang: str = setting("", "tfds sources: the source language (a feature of the dataset, e.g. de)")
    tgt_lang: str = setting("", "tfds sources: the target language (e.g. en)")
    tfds_dir: str = setting("", "tfds sources: the data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)",
                            path="place")
    arch: str = setting("transformer", "model family", ("transformer", "seq2seq"))
    cell: str = setting("lstm", "seq2seq: recurrent cell (lstm-peephole: gates that also see the cell state)",
                        ("lstm", "lstm-peephole", "gru", "rnn"))
    attention: str = setting("bahdanau", "seq2seq: attention over encoder outputs; none = the encoder's final "
                                         "state is the only context", ATTENTION_KINDS)
    input_feeding: bool = setting(False, "seq2seq with luong attention: feed the last attentional state back in")
    bidirectional: bool = setting(True, "seq2seq: bidirectional encoder")
    layers: int = setting(3, "encoder and decoder layers each (recurrent layers or Transformer blocks)",
                          minimum=1, maximum=64)
    units: int = setting(256, "hidden units (seq2seq) or d_model (Transformer)", minimum=1, maximum=8192)
    heads: int = setting(4, "Transformer: attention heads", minimum=1, maximum=256)
    ffn: int = setting(0, "Transformer: feed-forward width; 0 = 4 × units", minimum=0, maximum=65536)
    embedding_dim: int = setting(0, "seq2seq: embedding size; 0 = units", minimum=0, maximum=8192)
    attention_units: int = setting(0, "seq2seq with bahdanau attention: the score's hidden size; 0 = units",
                                   minimum=0, maximum=8192)
    positions: str = setting("sinusoidal", "Transformer position encoding", ("sinusoidal", "learned"))
    shared_embeddings: bool = setting(True, "one embedding table for source and target (joint vocabulary only)")
    tied_output: bool = setting(True, "Transformer: the output layer reuses the target embedding")
    label_smoothing: float = setting(0.1, "label smoothing ε of the training loss", minimum=0.0, below=1.0)
    tokenizer: str = setting("spm", "SentencePiece subwords (spm), characters or words", ("spm", "char", "word"))
    vocab_size: int = setting(0, "vocabulary size (per side with --separate-vocab); 0 = the tokenizer's default "
                                 "(spm 8000)", minimum=0, maximum=1_000_000)
    separate_vocab: bool = setting(False, "one tokenizer per language instead of a joint one")
    spm_model_type: str = setting("unigram", "SentencePiece algorithm", ("unigram", "bpe"))
    max_source_len: int = setting(100, "source tokens: longer training pairs are dropped, longer inputs cut",
                                  minimum=2, maximum=65536, renamed_from=("max_source_length",))
    max_target_len: int = setting(100, "target tokens: longer training pairs are dropped; the longest output",
                                  minimum=2, maximum=65536, renamed_from=("max_target_length",))
    beam: int = setting(4, "beam width used by evaluate and predict (1 = greedy; their --beam overrides it)",
                        minimum=1, maximum=256)
    length_penalty: float = setting(1.0, "beam score = log p / length ** this", minimum=0.0, maximum=10.0)
    sample_examples: int = setting(2, "validation sentences translated after each epoch; 0 = none",
                                   minimum=0, maximum=1000, renamed_from=("sample_sentences",))
    pretrained_embeddings: str = pretrained_embeddings_setting()
    freeze_embeddings: bool = freeze_embeddings_setting()


class TranslationCard(TaskCard):
    name = "translate"
    description = "translation: sentence pairs -> BLEU and chrF; translate text"
    Config = TranslationConfig
    architectures = ("transformer", "seq2seq")
    example = "seqtasks train translate --src train.de --tgt train.en --out runs/de-en"
    data_settings = ("src", "tgt", "data")

    def check_settings(self, cfg) -> None:
        check_heads_divide_units(cfg)
        if cfg.max_source_len < 2 or cfg.max_target_len < 2:
            raise UserError("--max-source-len and --max-target-len must be at least 2", fix="raise them")
