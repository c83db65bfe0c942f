"""Where a seqtasks training step's time goes: tf.profiler over a few traced steps, op time summed by op type.

    python benchmarks/train_profile.py                    # Transformer LM 4 × 256, bf16, batch 64 × 128
    python benchmarks/train_profile.py --arch lstm        # LSTM LM 2 × 256, bf16, unrolled

The P-train shapes of benchmarks/peers.py. Prints each op type's share of the summed kernel time (both
threads' time added up; the wrappers of the step function itself left out), so the matrix products'
share says how much of the step an ideal matmul could ever shorten.
"""
from __future__ import annotations

import argparse
import collections
import glob
import os
import shutil
import tempfile
import time

import common  # noqa: F401  (the repository on sys.path, TensorFlow's logs quiet)

WRAPPERS = ("Process", "Run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["transformer", "lstm"], default="transformer")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    os.environ["SEQTASKS_RUN_EAGERLY"] = "0"

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import keras
    import numpy as np
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    import seqtasks  # noqa: F401
    from seqtasks.config import TrainConfig
    from seqtasks.models.language_model import RecurrentLanguageModel, TransformerLanguageModel
    from seqtasks.training import compile_model

    vocab, seq_len, batch = 65, 128, 64
    model = (TransformerLanguageModel(vocab, 256, 4, 4, max_length=seq_len, dtype="mixed_bfloat16")
             if args.arch == "transformer" else
             RecurrentLanguageModel(vocab, "lstm", 256, 2, unroll=True, dtype="mixed_bfloat16"))
    model.build((None, seq_len))
    compile_model(model, TrainConfig(), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    ids = rng.integers(0, vocab, (2, batch * (args.steps + 2), seq_len)).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((ids[0], ids[1])).batch(batch)
    model.fit(dataset.take(2), verbose=0)  # trace
    logdir = tempfile.mkdtemp(prefix="seqtasks-profile-")
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    model.fit(dataset.skip(2).take(args.steps), verbose=0)
    wall = time.perf_counter() - start
    tf.profiler.experimental.stop()

    space = xplane_pb2.XSpace()
    for path in glob.glob(f"{logdir}/plugins/profile/*/*.xplane.pb"):
        with open(path, "rb") as handle:
            space.ParseFromString(handle.read())
    seconds: collections.Counter = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" not in name or "#" in name:
                    continue
                op_type = name.rsplit(":", 1)[1].strip()
                if op_type not in WRAPPERS and not op_type.startswith("__inference"):
                    seconds[op_type] += event.duration_ps / 1e12
    shutil.rmtree(logdir, ignore_errors=True)
    total = sum(seconds.values())
    print(f"{args.arch}: {args.steps} steps in {wall:.2f} s wall; kernel time summed over threads {total:.2f} s")
    matmuls = sum(v for k, v in seconds.items() if "MatMul" in k)
    print(f"matrix products (MatMul, BatchMatMul): {100 * matmuls / total:.1f}% of the kernel time")
    for op_type, value in seconds.most_common(args.top):
        print(f"  {op_type:32s} {value:8.3f} s  {100 * value / total:5.1f}%")


if __name__ == "__main__":
    main()
