"""Q-mt: Multi30k sacreBLEU after a fixed training budget, plus training throughput and decoding speed.

    python benchmarks/translation_quality.py --arch transformer --direction de-en --minutes 45
    python benchmarks/translation_quality.py --arch seq2seq --direction de-en --minutes 45
    python benchmarks/translation_quality.py --arch seq2seq-noattention --direction de-en --minutes 45
    (and the same with --direction en-de)
    python benchmarks/translation_quality.py --arch transformer --minutes 1.5 --smoke   # checks the script
    python benchmarks/translation_quality.py --arch transformer --evaluate benchmarks/runs/translate-...  # rescore

Trains with seqtasks/configs/translate-multi30k-ARCH.toml on Multi30k train (validation: val), then
translates test_2016_flickr with the best checkpoint, greedy and with beam 4, and scores it with
sacreBLEU (cased, 13a tokenization, the default) and chrF against the detokenized references.
Writes benchmarks/results/translate-quality-ARCH-SRC-TGT.json with BLEU/chrF, parameters, epochs,
training throughput (pairs/s and target tokens/s over the whole budget, validation included) and
decoding speed (sentences/s over the 1,000 test sentences, traces warmed up first).
`--smoke` translates only the first 100 test sentences. `--evaluate RUN` skips training and scores a
run this script trained earlier (its training figures come from the run's own records).
"""
from __future__ import annotations

import argparse
import datetime
import time

from common import ROOT, WORK, shared_file, write_result

TARGETS = {("transformer", "de-en"): 35.0, ("seq2seq", "de-en"): 27.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["transformer", "seq2seq", "seq2seq-noattention"], required=True)
    parser.add_argument("--direction", choices=["de-en", "en-de"], default="de-en")
    parser.add_argument("--minutes", type=float, default=45.0)
    parser.add_argument("--smoke", action="store_true", help="score the first 100 test sentences only")
    parser.add_argument("--evaluate", metavar="RUN", help="score this earlier run of the script; no training")
    args = parser.parse_args()

    import seqtasks
    from seqtasks.config import find_config
    from seqtasks.metrics import bleu_and_chrf
    from seqtasks.translation_data import encode_pairs
    from seqtasks.readers.parallel import open_parallel_source

    source_lang, target_lang = args.direction.split("-")

    def multi30k(split: str, lang: str) -> str:
        return str(shared_file("translation", "multi30k", f"{split}.{lang}.gz"))

    config = find_config(f"translate-multi30k-{args.arch}")
    out = WORK / f"translate-{args.arch}-{args.direction}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    if args.evaluate:
        run = seqtasks.load(args.evaluate)
    else:
        run = seqtasks.train("translate", out=out, config_file=str(config), src=multi30k("train", source_lang),
                             tgt=multi30k("train", target_lang), valid_src=multi30k("val", source_lang),
                             valid_tgt=multi30k("val", target_lang), max_time=args.minutes, verbose=1)
    state = run.directory.read_train_state()
    cfg = run.settings
    train_pairs = encode_pairs(open_parallel_source(source=cfg.src, target=cfg.tgt), run.preprocessor)
    train_pairs, _ = train_pairs.within(cfg.max_source_len, cfg.max_target_len)
    steps_per_epoch = -(-len(train_pairs) // cfg.batch_size)
    pairs_seen = state["global_step"] * len(train_pairs) / steps_per_epoch  # the mean batch, last ones included
    target_tokens_per_pair = float(train_pairs.target_lengths().mean())

    test = list(open_parallel_source(source=multi30k("test_2016_flickr", source_lang),
                                     target=multi30k("test_2016_flickr", target_lang)).pairs())
    if args.smoke:
        test = test[:100]
    sources, references = [s for s, _ in test], [t for _, t in test]
    translator = run.task.translator(cfg, run.model, run.preprocessor)
    scores, speed = {}, {}
    for name, beam in (("greedy", 1), ("beam4", 4)):
        translator.translate(sources[:64], beam)  # trace the encoder and the decoding loop first
        start = time.perf_counter()
        hypotheses = [h[0].text for h in translator.translate(sources, beam)]
        speed[name] = round(len(sources) / (time.perf_counter() - start), 2)
        scores[name] = bleu_and_chrf(hypotheses, [references])
        print(f"{name}: BLEU {scores[name]['bleu']:.2f} chrF {scores[name]['chrf']:.2f}, "
              f"{speed[name]} sentences/s", flush=True)
    target = TARGETS.get((args.arch, args.direction))
    bleu = scores["beam4"]["bleu"]
    train_seconds = state["elapsed_seconds"]
    write_result(f"translate-quality-{args.arch}-{source_lang}-{target_lang}{'-smoke' if args.smoke else ''}", {
        "target_id": "Q-mt", "arch": args.arch, "direction": args.direction, "config": str(config.relative_to(ROOT)),
        "test_set": "multi30k test_2016_flickr" + (" (first 100, smoke)" if args.smoke else ""),
        "bleu_beam4": round(bleu, 2), "chrf_beam4": round(scores["beam4"]["chrf"], 2),
        "bleu_greedy": round(scores["greedy"]["bleu"], 2), "chrf_greedy": round(scores["greedy"]["chrf"], 2),
        "bleu_signature": scores["beam4"]["bleu_signature"], "target_bleu": target,
        "met": None if target is None else bleu >= target,
        "parameters": run.model.count_params(), "precision": run.record["resolved"]["precision"],
        "steps": state["global_step"], "epochs": round(state["global_step"] / steps_per_epoch, 2),
        "train_minutes": round(train_seconds / 60, 2),
        "train_pairs_per_s": round(pairs_seen / train_seconds, 1),
        "train_target_tokens_per_s": round(pairs_seen * target_tokens_per_pair / train_seconds),
        "decode_sentences_per_s": speed, "run": str(run.path),
    })


if __name__ == "__main__":
    main()
