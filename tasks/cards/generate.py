"""The generate task's card: its settings and what `seqtasks tasks` and `seqtasks train generate --help` show.

It imports no TensorFlow, so that help answers at once; the task itself is tasks/generate.py.
"""
from __future__ import annotations

import dataclasses

from seqtasks.config import TrainConfig, check_heads_divide_units, setting
from seqtasks.tasks.base import TaskCard
from seqtasks.tasks.cards.lm import LanguageModelCard, LanguageModelConfig


# `train generate` takes the model settings of `train lm` as they are (same flags, defaults and help):
# every lm setting but the training-loop ones and those about raw text and its samples
_LM_ONLY = {"data", "valid", "valid_fraction", "doc_per_line", "text_key", "tfds_dir", "seq_len", "sample_tokens"}
_MODEL_FIELDS = [f for f in dataclasses.fields(LanguageModelConfig)
                 if f.name not in _LM_ONLY and f.name not in {t.name for t in dataclasses.fields(TrainConfig)}]


@dataclasses.dataclass
class _PairSettings(TrainConfig):
    data: str = setting("", 'prompt/completion pairs: JSONL {"prompt": ..., "completion": ...} or a TSV '
                            "prompt<TAB>completion (a file, folder or glob; .gz fine)", path="data")
    valid: str = setting("", "validation pairs; default: the --valid-fraction of --data held out", path="data")
    valid_fraction: float = setting(0.05, "share of the training pairs held out when --valid is not given",
                                    minimum=0.0, below=1.0)
    from_run: str = dataclasses.field(default="", metadata={
        "help": "start from this lm or generate run: its tokenizer, model shape and weights",
        "choices": None, "aliases": ("--from",), "path": "place"})


ConditionalGenerationConfig = dataclasses.make_dataclass("ConditionalGenerationConfig", [
    *((f.name, f.type, dataclasses.field(default=f.default, metadata=f.metadata)) for f in _MODEL_FIELDS),
    ("seq_len", int, setting(128, "longest training sequence, prompt + separator + completion tokens "
                                  "(the Transformer's context); longer pairs lose the start of the prompt",
                             minimum=1, maximum=65536)),
    ("sample_examples", int, setting(3, "validation prompts completed after each epoch to show progress; 0 = none",
                                     minimum=0, maximum=1000)),
], bases=(_PairSettings,))
ConditionalGenerationConfig.__module__ = __name__


class ConditionalGenerationCard(TaskCard):
    name = "generate"
    description = "conditional generation: prompt/completion pairs -> completions (exact match, chrF)"
    Config = ConditionalGenerationConfig
    architectures = LanguageModelCard.architectures
    example = "seqtasks train generate --data pairs.jsonl --out runs/generate"

    def check_settings(self, cfg) -> None:
        check_heads_divide_units(cfg)
