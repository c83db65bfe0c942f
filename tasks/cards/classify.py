"""The classify task's card: its settings and what `seqtasks tasks` and `seqtasks train classify --help` show.

It imports no TensorFlow, so that help answers at once; the task itself is tasks/classify.py.
"""
from __future__ import annotations

import dataclasses

from seqtasks.choices import ARCHITECTURES, POOLING_KINDS
from seqtasks.config import setting
from seqtasks.encoder_settings import EncoderSettings, check_encoder_settings
from seqtasks.tasks.base import TaskCard


@dataclasses.dataclass
class ClassificationConfig(EncoderSettings):
    data: str = setting("", "training data: TSV/CSV with a header, JSONL, .gz, or tfds:NAME[:SPLIT]", path="data")
    text_col: str = setting("", "the text column: a header name (default: text, sentence, ...) or an index")
    label_col: str = setting("", "the label column: a header name (default: label, class, ...) or an index")
    tfds_dir: str = setting("", "tfds sources: the data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)",
                            path="place")
    pooling: str = setting("max", "how token states become one vector", POOLING_KINDS)


class ClassificationCard(TaskCard):
    name = "classify"
    description = "sequence classification: text -> label (TSV, CSV, JSONL); accuracy, macro-F1, confusion"
    Config = ClassificationConfig
    architectures = ARCHITECTURES

    def check_settings(self, cfg) -> None:
        check_encoder_settings(cfg)
