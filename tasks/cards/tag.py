"""The tag task's card: its settings and what `seqtasks tasks` and `seqtasks train tag --help` show.

It imports no TensorFlow, so that help answers at once; the task itself is tasks/tag.py.
"""
from __future__ import annotations

import dataclasses

from seqtasks.choices import ARCHITECTURES
from seqtasks.config import setting
from seqtasks.encoder_settings import EncoderSettings, check_encoder_settings
from seqtasks.tasks.base import TaskCard


@dataclasses.dataclass
class TaggingConfig(EncoderSettings):
    data: str = setting("", "training data: CoNLL or CoNLL-U files (a file, folder, glob; .gz)", path="data")
    tokenizer: str = setting("word", "tokens: whole words, or SentencePiece pieces averaged per word (spm)",
                             ("spm", "word"))
    char_features: str = setting("cnn", "character features of each word", ("none", "cnn", "lstm"))
    word_dropout: float = setting(0.05, "training: replace a word by <unk> with this probability",
                                  minimum=0.0, below=1.0)
    tag_col: str = setting("", "the tag column: an index from 0 (default: the last), or upos|xpos for CoNLL-U")
    scheme: str = setting("auto", "chunk tag scheme of the data (auto: detect; none: plain tags such as POS)",
                          ("auto", "iob1", "bio", "iobes", "none"))
    crf: bool = setting(False, "a linear-chain CRF output layer (Viterbi decoding) instead of a softmax per token")


class TaggingCard(TaskCard):
    name = "tag"
    description = "sequence labeling: words -> tags (CoNLL, CoNLL-U; IOB1/BIO/IOBES); accuracy, entity F1"
    Config = TaggingConfig
    architectures = ARCHITECTURES

    def check_settings(self, cfg) -> None:
        check_encoder_settings(cfg)
