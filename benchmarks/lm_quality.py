"""Q-lm: tiny-shakespeare char LM, validation loss in nats/char after a fixed training budget.

    python benchmarks/lm_quality.py --arch lstm --minutes 20
    python benchmarks/lm_quality.py --arch transformer --minutes 20

Trains with seqtasks/configs/lm-tinyshakespeare-ARCH.toml on the first 90% of the characters,
evaluates the best checkpoint on the last 10%, writes benchmarks/results/lm-quality-ARCH.json.
"""
from __future__ import annotations

import argparse
import datetime
import math

from common import ROOT, WORK, tinyshakespeare_splits, write_result

TARGETS = {"lstm": 1.45, "transformer": 1.50}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted(TARGETS), required=True)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--precision", default=None, help="override the config's precision (fp32, bf16)")
    args = parser.parse_args()

    import seqtasks
    from seqtasks.config import find_config

    train, valid = tinyshakespeare_splits()
    config = find_config(f"lm-tinyshakespeare-{args.arch}")
    out = WORK / f"lm-{args.arch}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    overrides = {"precision": args.precision} if args.precision else {}
    run = seqtasks.train("lm", out=out, config_file=str(config), data=str(train), valid=str(valid),
                         max_time=args.minutes, verbose=1, **overrides)
    metrics = run.evaluate(str(valid))
    state = run.directory.read_train_state()
    cfg = run.settings
    nats_per_char = metrics["bpc"] * math.log(2)
    write_result(f"lm-quality-{args.arch}{'-' + args.precision if args.precision else ''}", {
        "target_id": "Q-lm", "arch": args.arch, "config": str(config.relative_to(ROOT)),
        "precision": run.record["resolved"]["precision"],
        "nats_per_char": round(nats_per_char, 4), "bpc": round(metrics["bpc"], 4),
        "target_nats_per_char": TARGETS[args.arch], "met": nats_per_char <= TARGETS[args.arch],
        "parameters": run.model.count_params(), "steps": state["global_step"],
        "tokens_seen": state["global_step"] * cfg.batch_size * cfg.seq_len,
        "train_minutes": round(state["elapsed_seconds"] / 60, 2), "run": str(run.path),
    })


if __name__ == "__main__":
    main()
