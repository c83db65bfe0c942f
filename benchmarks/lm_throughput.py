"""P-train: training tokens/s of seqtasks' language models vs the keras.io composition, same size.

    python benchmarks/lm_throughput.py --steps 20 --rounds 3

Side by side in one process, alternating (reference, seqtasks fp32, seqtasks bf16, ...) for `rounds`.
Variants: the LSTM also unrolled (`--unroll`: straight-line steps and hand-written backpropagation
through time), the Transformer also with a ReLU feed-forward (`--activation relu`, the reference's).
Each figure comes from the median time of one training step over `steps` steps (fit's start-up and
end-of-epoch work left out). tokens/s is the median over rounds; a speedup is the median over rounds of
the ratio to the reference measured in the same round, so a drift of the shared machine's speed
between rounds cancels out (each round's ratios are written too). Model FLOPs utilization is
measured against the fp32 and bf16 matmul peaks, measured in the same run before every round (the
median is used: one measurement at a slow moment of the shared machine would overstate every MFU). FLOPs per token =
6 × non-embedding parameters + 12 × layers × seq_len × d_model (attention).
"""
from __future__ import annotations

import argparse
import statistics

from common import matmul_peak, step_timer, write_result

VOCAB, SEQ_LEN, BATCH = 65, 128, 64


def train_tokens_per_second(model, steps: int, batch: int) -> float:
    """Tokens per second of the median training step (after a warm-up fit that traces the step)."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.integers(0, VOCAB, (batch * steps, SEQ_LEN)).astype("int32")
    y = rng.integers(0, VOCAB, (batch * steps, SEQ_LEN)).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)
    model.fit(dataset.take(2), verbose=0)  # trace and warm up
    timer = step_timer()
    model.fit(dataset, verbose=0, callbacks=[timer])
    return batch * SEQ_LEN / statistics.median(timer.durations)


def non_embedding_parameters(model) -> int:
    import keras

    return sum(int(keras.ops.size(w)) for w in model.weights if "embedding" not in w.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--arch", choices=["lstm", "transformer", "both"], default="both")
    args = parser.parse_args()

    import keras

    import seqtasks  # noqa: F401
    from benchmarks.reference import keras_io
    from seqtasks.models.language_model import RecurrentLanguageModel, TransformerLanguageModel
    from seqtasks.training import compile_model
    from seqtasks.config import TrainConfig

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def compiled(model):
        model.build((None, SEQ_LEN))
        compile_model(model, TrainConfig(), loss)
        return model

    def reference(arch):
        model = (keras_io.lstm_language_model(VOCAB, 256, 2, SEQ_LEN) if arch == "lstm"
                 else keras_io.transformer_language_model(VOCAB, 256, 4, 4, SEQ_LEN))
        model.compile(optimizer="adam", loss=loss)
        return model

    def ours(arch, dtype, unroll=False, activation="gelu"):
        if arch == "lstm":
            return compiled(RecurrentLanguageModel(VOCAB, "lstm", 256, 2, unroll=unroll, dtype=dtype))
        return compiled(TransformerLanguageModel(VOCAB, 256, 4, 4, max_length=SEQ_LEN, activation=activation,
                                                 dtype=dtype))

    peak_samples: dict[str, list[float]] = {"fp32": [], "bf16": []}

    def measure_peaks():
        for name in peak_samples:
            peak_samples[name].append(matmul_peak(name))
        return {name: statistics.median(values) for name, values in peak_samples.items()}

    peaks = measure_peaks()
    archs = ["lstm", "transformer"] if args.arch == "both" else [args.arch]
    result = {"target_id": "P-train", "batch": BATCH, "seq_len": SEQ_LEN,
              "matmul_peak_tflops": {k: round(v / 1e12, 3) for k, v in peaks.items()}, "models": {}}
    for arch in archs:
        builders = {"keras_io_fp32": lambda: reference(arch), "seqtasks_fp32": lambda: ours(arch, "float32"),
                    "seqtasks_bf16": lambda: ours(arch, "mixed_bfloat16")}
        if arch == "lstm":
            builders["seqtasks_bf16_unrolled"] = lambda: ours(arch, "mixed_bfloat16", unroll=True)
        else:  # the keras.io block's ReLU feed-forward, as the Q-lm config trains it
            builders["seqtasks_bf16_relu"] = lambda: ours(arch, "mixed_bfloat16", activation="relu")
        speeds: dict[str, list[float]] = {name: [] for name in builders}
        flops_per_token = {}
        for round_index in range(args.rounds):
            if round_index:
                peaks = measure_peaks()
            for name, build in builders.items():
                keras.utils.clear_session()
                model = build()
                flops_per_token[name] = 6 * non_embedding_parameters(model) + (
                    12 * 4 * SEQ_LEN * 256 if arch == "transformer" else 0)
                speeds[name].append(train_tokens_per_second(model, args.steps, BATCH))
                print(f"{arch} round {round_index + 1} {name}: {speeds[name][-1]:,.0f} tokens/s", flush=True)
        medians = {name: statistics.median(values) for name, values in speeds.items()}
        ratios = {name: [v / b for v, b in zip(values, speeds["keras_io_fp32"])] for name, values in speeds.items()}
        result["matmul_peak_tflops"] = {k: round(v / 1e12, 3) for k, v in peaks.items()}
        result["models"][arch] = {
            name: {"tokens_per_s": round(value), "speedup_vs_keras_io": round(statistics.median(ratios[name]), 2),
                   "speedup_per_round": [round(r, 2) for r in ratios[name]],
                   "mfu_vs_fp32_peak": round(value * flops_per_token[name] / peaks["fp32"], 3),
                   "mfu_vs_bf16_peak": round(value * flops_per_token[name] / peaks["bf16"], 3),
                   "flops_per_token": flops_per_token[name]}
            for name, value in medians.items()}
    write_result("lm-throughput" if args.arch == "both" else f"lm-throughput-{args.arch}", result)


if __name__ == "__main__":
    main()
