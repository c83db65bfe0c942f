"""What logging the global gradient norm costs a training step: AdamW vs MonitoredAdamW, same model and data.

    python benchmarks/gradient_norm_cost.py --arch lstm
    python benchmarks/gradient_norm_cost.py --arch transformer

Both optimizers clip at the same global norm; MonitoredAdamW (seqtasks.training, what every run trains
with) also sums the squared gradients once more per step and updates four counters. Traced train steps
(not eager), rounds of each optimizer interleaved so that the shared machine's load hits both alike;
the figure is the ratio of median step times (overhead_measured), and, since a loaded machine's noise
hides a small difference, the added work timed alone (norm_only_s: the global norm of tensors shaped
like the gradients, compiled) over the step time (overhead_bound). Writes benchmarks/results/gradient-norm-cost-ARCH.json.
"""
from __future__ import annotations

import argparse
import statistics
import time

from common import write_result


class StepTimes:
    def __init__(self):
        import keras

        class Timer(keras.callbacks.Callback):
            def on_train_batch_begin(inner, batch, logs=None):
                inner.start = time.perf_counter()

            def on_train_batch_end(inner, batch, logs=None):
                self.times.append(time.perf_counter() - inner.start)

        self.times: list[float] = []
        self.callback = Timer()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=("lstm", "transformer"), default="lstm")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=8, help="rounds per optimizer, interleaved")
    args = parser.parse_args()

    import keras
    import numpy as np

    from seqtasks.models.language_model import RecurrentLanguageModel, TransformerLanguageModel
    from seqtasks.training import MonitoredAdamW

    vocab, seq_len, batch = 65, 128, 32
    rng = np.random.default_rng(0)
    x = rng.integers(1, vocab, (batch * args.steps, seq_len)).astype("int32")
    y = np.roll(x, -1, axis=1)
    models, timers = {}, {}
    for name, optimizer_class in (("AdamW", keras.optimizers.AdamW), ("MonitoredAdamW", MonitoredAdamW)):
        keras.utils.set_random_seed(0)
        model = (RecurrentLanguageModel(vocab, "lstm", 256, 2) if args.arch == "lstm"
                 else TransformerLanguageModel(vocab, 256, 4, 4, max_length=seq_len))
        model.build((None, seq_len))
        model.compile(optimizer=optimizer_class(learning_rate=1e-3, global_clipnorm=1.0),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x[:batch * 2], y[:batch * 2], batch_size=batch, epochs=1, verbose=0)  # trace once
        models[name], timers[name] = model, StepTimes()
    for _ in range(args.rounds):
        for name, model in models.items():
            model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False, callbacks=[timers[name].callback])
    medians = {name: statistics.median(timer.times) for name, timer in timers.items()}
    overhead = medians["MonitoredAdamW"] / medians["AdamW"] - 1
    # the added work alone, which the load on a shared machine hides in the step times: the norm of
    # gradient-shaped tensors (one sum of squares per variable, as MonitoredAdamW.apply), compiled
    import tensorflow as tf

    grads = [tf.random.normal(v.shape) for v in models["AdamW"].trainable_variables]
    norm = tf.function(lambda gs: tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(g)) for g in gs])))
    norm(grads).numpy()
    norm_times = []
    for _ in range(50):
        start = time.perf_counter()
        norm(grads).numpy()
        norm_times.append(time.perf_counter() - start)
    norm_seconds = statistics.median(norm_times)
    write_result(f"gradient-norm-cost-{args.arch}", {
        "arch": args.arch, "parameters": models["AdamW"].count_params(), "batch": batch, "seq_len": seq_len,
        "steps_timed_each": len(timers["AdamW"].times),
        "median_step_s": {name: round(value, 5) for name, value in medians.items()},
        "overhead_measured": round(overhead, 4), "norm_only_s": round(norm_seconds, 6),
        "overhead_bound": round(norm_seconds / medians["AdamW"], 5), "target": "< 0.02",
        "met": max(overhead, norm_seconds / medians["AdamW"]) < 0.02})


if __name__ == "__main__":
    main()
