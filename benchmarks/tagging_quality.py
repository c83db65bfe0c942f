"""Q-pos: UD English EWT UPOS test accuracy after a fixed training budget (or any CoNLL corpus).

    python benchmarks/tagging_quality.py --config tag-ud-ewt-bilstm-char --minutes 15
    python benchmarks/tagging_quality.py --config tag-ner-bilstm-crf --minutes 30 --dataset wnut17
    python benchmarks/tagging_quality.py --config tag-ner-bilstm-crf --minutes 15 \\
        --train ner/train.conll --valid ner/dev.conll --test ner/test.conll

Default data: ../shared/data/tagging/ud_en_ewt (train to train, dev to validate and pick the best
checkpoint, test to report); `--dataset wnut17` takes WNUT-17's own train/dev/test split. Writes benchmarks/results/CONFIG.json with token accuracy and, for
chunk tags (NER), entity-level F1 with conlleval semantics.
"""
from __future__ import annotations

import argparse
import datetime

from common import ROOT, WORK, shared_file, write_result

TARGETS = {"accuracy": 0.95}
DATASETS = {  # name -> (folder under shared/data, train, dev, test)
    "ud-ewt": (("tagging", "ud_en_ewt"), "en_ewt-ud-train.conllu.gz", "en_ewt-ud-dev.conllu.gz", "en_ewt-ud-test.conllu.gz"),
    "wnut17": (("tagging", "wnut17"), "wnut17train.conll", "emerging.dev.conll", "emerging.test.annotated"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="tag-ud-ewt-bilstm-char", help="an installed config (seqtasks/configs/), by name")
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="ud-ewt",
                        help="a shared dataset's train/dev/test files (--train/--valid/--test override them)")
    parser.add_argument("--train", help="training CoNLL file (default: UD EWT train)")
    parser.add_argument("--valid", help="validation file (default: UD EWT dev)")
    parser.add_argument("--test", help="test file (default: UD EWT test)")
    args = parser.parse_args()

    import seqtasks
    from seqtasks.config import find_config

    folder, *files = DATASETS[args.dataset]
    train, valid, test = (given or str(shared_file(*folder, name))
                          for given, name in zip((args.train, args.valid, args.test), files))
    config = find_config(args.config)
    name = args.config if args.dataset == "ud-ewt" else f"{args.config}-{args.dataset}"
    out = WORK / f"{name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    run = seqtasks.train("tag", out=out, config_file=str(config), data=train, valid=valid,
                         max_time=args.minutes, verbose=1)
    metrics = run.evaluate(test)
    state = run.directory.read_train_state()
    result = {
        "target_id": "Q-pos" if args.dataset == "ud-ewt" and not args.train else "tagging", "config": str(config.relative_to(ROOT)),
        "data": {"train": train, "valid": valid, "test": test}, "precision": run.record["resolved"]["precision"],
        "test_accuracy": round(metrics["accuracy"], 4), "test_tokens": metrics["tokens"],
        "parameters": run.model.count_params(), "steps": state["global_step"], "epochs": state["epoch"],
        "train_minutes": round(state["elapsed_seconds"] / 60, 2), "run": str(run.path),
    }
    if "f1" in metrics:
        result.update({"test_entity_f1": round(metrics["f1"], 4), "test_entity_precision": round(metrics["precision"], 4),
                       "test_entity_recall": round(metrics["recall"], 4)})
    if args.dataset == "ud-ewt" and not args.train:
        result.update({"target_accuracy": TARGETS["accuracy"], "met": metrics["accuracy"] >= TARGETS["accuracy"]})
    write_result(name, result)


if __name__ == "__main__":
    main()
