"""Does the LSTM's forget-gate bias of 1 at initialisation change Q-lm? Same config, seed and steps, bias 0 vs 1.

    python benchmarks/forget_bias.py --steps 900

Trains seqtasks/configs/lm-tinyshakespeare-lstm.toml (the Q-lm LSTM) for a fixed number of steps (not a
time budget, so that the machine's load does not change the comparison) on the first 90% of
tiny-shakespeare, once with the forget-gate bias at 0 (the cells before this change: the bias is
patched to zeros) and once at 1, and scores each best checkpoint on the last 10% in nats/char.
Writes benchmarks/results/lm-forget-bias.json.
"""
from __future__ import annotations

import argparse
import datetime
import math
import time

from common import ROOT, WORK, tinyshakespeare_splits, write_result


def train_once(bias: float, steps: int, seed: int, train, valid) -> dict:
    import keras
    import seqtasks
    from seqtasks.config import find_config
    from seqtasks.layers import recurrent

    original = recurrent.ForgetGateBias.__call__
    if bias == 0:
        recurrent.ForgetGateBias.__call__ = lambda self, shape, dtype=None: keras.ops.zeros(shape, dtype)
    try:
        config = find_config("lm-tinyshakespeare-lstm")
        per_epoch = 300
        out = WORK / f"lm-forget-bias-{bias:g}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
        start = time.time()
        run = seqtasks.train("lm", out=out, config_file=str(config), data=str(train), valid=str(valid),
                             epochs=max(1, steps // per_epoch), steps_per_epoch=per_epoch, max_time=0, seed=seed,
                             verbose=1)
        minutes = (time.time() - start) / 60
    finally:
        recurrent.ForgetGateBias.__call__ = original
    metrics = run.evaluate(str(valid))
    history = run.directory.read_train_state()["history"]
    return {"forget_bias": bias, "nats_per_char": round(metrics["bpc"] * math.log(2), 4),
            "val_loss_per_epoch": [round(row.get("val_loss", float("nan")), 4) for row in history],
            "steps": run.directory.read_train_state()["global_step"], "minutes": round(minutes, 1),
            "run": str(run.path)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=900, help="training steps per variant (multiples of 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bias", type=float, choices=(0.0, 1.0), default=None,
                        help="one variant only (its own result file), e.g. to run the two at once")
    args = parser.parse_args()
    train, valid = tinyshakespeare_splits()
    biases = (0.0, 1.0) if args.bias is None else (args.bias,)
    results = [train_once(bias, args.steps, args.seed, train, valid) for bias in biases]
    suffix = "" if args.bias is None else f"-{args.bias:g}"
    write_result(f"lm-forget-bias{suffix}", {"target_id": "Q-lm", "config": "seqtasks/configs/lm-tinyshakespeare-lstm.toml",
                                    "steps": args.steps, "seed": args.seed, "variants": results})


if __name__ == "__main__":
    main()
