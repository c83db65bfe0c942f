"""seqtasks: one command line for six sequence tasks on Keras 3.

Importing seqtasks registers its layers and models with Keras, so `keras.saving.load_model` can load
any run's model.keras (in safe mode).
"""
from __future__ import annotations

import os
from pathlib import Path

__version__ = "0.1.0"

# TensorFlow's C++ start-up chatter (CUDA probes, CPU feature notes) hides the output users need
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _import_tensorflow_quietly() -> None:
    """Some of that chatter is written straight to stderr (fd 2) before any log setting applies, so
    stderr is pointed at /dev/null while TensorFlow starts. SEQTASKS_TF_LOGS=1 or --debug shows it."""
    import sys

    if os.environ.get("SEQTASKS_TF_LOGS") or "--debug" in sys.argv or "tensorflow" in sys.modules:
        return
    try:
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    sys.stderr.flush()
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()
        tf.zeros(())
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_tensorflow_quietly()

# In a source checkout, tasks/ and data/ sit beside this package (the repository's top level is the
# design card); installed, setuptools maps them to seqtasks.tasks and seqtasks.data. Adding the
# checkout root to the package path makes `python cli.py` work without installing.
_checkout_root = Path(__file__).resolve().parent.parent
if (_checkout_root / "tasks" / "base.py").is_file() and (_checkout_root / "pyproject.toml").is_file():
    __path__.append(str(_checkout_root))  # noqa: F821 (the package's own __path__)

from seqtasks import layers, models  # noqa: E402,F401  (registers Keras serializables)
from seqtasks.models import language_model  # noqa: E402,F401
from seqtasks.models import classifier, tagger  # noqa: E402,F401
from seqtasks.models import seq2seq, transformer_seq2seq  # noqa: E402,F401
from seqtasks.models import captioner, image_encoder  # noqa: E402,F401
from seqtasks import losses  # noqa: E402,F401
from seqtasks.api import Run, finetune, load, resume, train  # noqa: E402

__all__ = ["Run", "finetune", "load", "resume", "train", "__version__"]
