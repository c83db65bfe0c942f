"""TensorFlow, started quietly: importing this module starts TensorFlow with its stderr silenced.

TensorFlow's C++ start-up chatter (CUDA probes, CPU feature notes) hides the output users need, and
some of it is written straight to stderr (fd 2) before any log setting applies. seqtasks imports
TensorFlow only for a command that needs it; the modules through which that first happens
(seqtasks.api and seqtasks.serializables) import this one before anything that imports TensorFlow.
SEQTASKS_TF_LOGS=1 or --debug shows the chatter.

Two things must happen before TensorFlow's eager context starts, so they happen here:
SEQTASKS_CPU_DEVICES=N splits the CPU into N logical devices (for trying `--strategy mirrored`
on a machine without GPUs), and with TF_CONFIG set (multi-worker training) nothing starts the
context at all, since `--strategy multiworker` must configure its collectives first.
"""
from __future__ import annotations

import os
import sys


CPU_DEVICES_ENV = "SEQTASKS_CPU_DEVICES"


def split_cpu(count_text: str | None) -> None:
    """Make `count_text` logical CPU devices (nothing when it is unset, "", "0" or "1"). Too late
    (the eager context already started) or not a number: one line on stderr, and the devices stay."""
    if not count_text or count_text.strip() in ("0", "1"):
        return
    import tensorflow as tf

    try:
        count = int(count_text)
        if count < 1:
            raise ValueError(count_text)
        cpu = tf.config.list_physical_devices("CPU")[0]
        if len(tf.config.get_logical_device_configuration(cpu) or ()) == count:
            return  # made already
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except ValueError:
        print(f"seqtasks: warning: {CPU_DEVICES_ENV}={count_text!r} is not a device count; using one CPU device",
              file=sys.stderr)
    except RuntimeError:
        print(f"seqtasks: warning: {CPU_DEVICES_ENV} came too late (TensorFlow had started); "
              "set it before starting Python", file=sys.stderr)


def silence_native_stderr() -> None:
    """fd 2 -> /dev/null for good, Python's sys.stderr kept on the terminal. For a worker of a
    multi-worker run: when a peer stops, TensorFlow's C++ side logs a dozen gRPC and collective
    errors (past any log level setting) around the one line that says what happened."""
    try:
        terminal, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    sys.stderr.flush()
    sys.stderr = os.fdopen(terminal, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")
    os.dup2(devnull, 2)
    os.close(devnull)


def start_tensorflow_quietly() -> None:
    """Import TensorFlow and let it probe its devices with fd 2 pointed at /dev/null."""
    wants_logs = os.environ.get("SEQTASKS_TF_LOGS") or "--debug" in sys.argv
    if os.environ.get("TF_CONFIG") and not wants_logs and "tensorflow" not in sys.modules:
        silence_native_stderr()
    if wants_logs or "tensorflow" in sys.modules:
        split_cpu(os.environ.get(CPU_DEVICES_ENV))
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
        split_cpu(os.environ.get(CPU_DEVICES_ENV))
        if not os.environ.get("TF_CONFIG"):
            tf.zeros(())
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


start_tensorflow_quietly()
