"""TensorFlow, started quietly: importing this module starts TensorFlow with its stderr silenced.

TensorFlow's C++ start-up chatter (CUDA probes, CPU feature notes) hides the output users need, and
some of it is written straight to stderr (fd 2) before any log setting applies. seqtasks imports
TensorFlow only for a command that needs it; the modules through which that first happens
(seqtasks.api and seqtasks.serializables) import this one before anything that imports TensorFlow.
SEQTASKS_TF_LOGS=1 or --debug shows the chatter.
"""
from __future__ import annotations

import os
import sys


def start_tensorflow_quietly() -> None:
    """Import TensorFlow and let it probe its devices with fd 2 pointed at /dev/null."""
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


start_tensorflow_quietly()
