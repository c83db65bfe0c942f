"""seqtasks: one command line for six sequence tasks on Keras 3.

`import seqtasks` imports no TensorFlow, so `seqtasks --help` and every --help answer at once.
TensorFlow starts with the first use of the API (seqtasks.train, load, resume, finetune, Run: all of
seqtasks.api), which also registers every seqtasks layer and model with Keras, so that
`keras.saving.load_model` can then load any run's model.keras (in safe mode).
"""
from __future__ import annotations

import os
from typing import Any

__version__ = "0.1.0"
__all__ = ["Run", "finetune", "load", "resume", "train", "__version__"]

# TensorFlow's C++ start-up chatter (CUDA probes, CPU feature notes) hides the output users need; the
# rest of it, written before this setting applies, is silenced by seqtasks.backend
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def __getattr__(name: str) -> Any:
    """seqtasks.train, .load, ... are seqtasks.api's, imported (with TensorFlow) on first use."""
    if name in ("Run", "finetune", "load", "resume", "train"):
        from seqtasks import api

        return getattr(api, name)
    raise AttributeError(f"module 'seqtasks' has no attribute {name!r}")
