"""Two local workers (`--strategy multiworker`, TF_CONFIG on 127.0.0.1) against one process, same
global batch: steps/s and the loss curve of each, and the largest weight difference.

On one machine the two workers share its cores and talk over loopback, so this shows that the
workers train the single process's model, not a speed-up.

    python benchmarks/multiworker.py --epochs 4 --steps 25
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time

from common import ROOT, WORK, shared_file, write_result

from seqtasks.distributed import local_cluster


def train_command(data, out, args) -> list[str]:
    return [sys.executable, str(ROOT / "cli.py"), "train", "lm", "--data", str(data), "--out", str(out), "--quiet",
            "--arch", "lstm", "--units", str(args.units), "--layers", "1", "--seq-len", "64",
            "--batch-size", str(args.batch_size), "--epochs", str(args.epochs), "--steps-per-epoch", str(args.steps),
            "--precision", "fp32", "--dropout", "0", "--sample-tokens", "0", "--warmup-steps", "10"]


def summary(run) -> dict:
    with open(run / "history.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    steps, seconds = int(rows[-1]["step"]), float(rows[-1]["elapsed_s"])
    return {"steps": steps, "seconds": seconds, "steps_per_s": round(steps / seconds, 2),
            "loss": [round(float(r["loss"]), 4) for r in rows], "val_loss": [round(float(r["val_loss"]), 4) for r in rows]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    import os

    data = shared_file("lm", "tinyshakespeare.txt")
    folder = WORK / "multiworker"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    env = {**os.environ, "SEQTASKS_RUN_EAGERLY": "0"}
    subprocess.run(train_command(data, folder / "one", args), check=True, env=env)
    cluster = local_cluster(2)
    start = time.monotonic()
    workers = [subprocess.Popen([*train_command(data, folder / "two", args), "--strategy", "multiworker"],
                                env={**env, "TF_CONFIG": json.dumps({"cluster": {"worker": cluster},
                                                                     "task": {"type": "worker", "index": i}})})
               for i in range(2)]
    codes = [w.wait() for w in workers]
    if any(codes):
        raise SystemExit(f"a worker failed: exit statuses {codes}")
    import numpy as np

    sys.path.insert(0, str(ROOT))
    import seqtasks

    one, two = (seqtasks.load(folder / name).model.get_weights() for name in ("one", "two"))
    result = {"one_process": summary(folder / "one"), "two_workers": summary(folder / "two"),
              "two_workers_wall_s": round(time.monotonic() - start, 1),
              "max_weight_difference": float(max(np.abs(a - b).max() for a, b in zip(one, two))),
              "settings": vars(args)}
    print(json.dumps(result, indent=2))
    write_result("multiworker", result)


if __name__ == "__main__":
    main()
