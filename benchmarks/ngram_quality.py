"""n-gram language models on tiny-shakespeare: held-out nats/char and bpc by order, and counting speed.

    python benchmarks/ngram_quality.py                       # char tokenizer, orders 3-7, kneser-ney
    python benchmarks/ngram_quality.py --tokenizer word --vocab-size 5000 --orders 2,3,4,5
    python benchmarks/ngram_quality.py --speed               # counting throughput and memory only

Each order is a `seqtasks.train("lm", arch="ngram", ...)` on the first 90% of the characters and
`run.evaluate` on the last 10% (the split of benchmarks/lm_quality.py, so the figures sit beside the
LSTM's and the Transformer's). Writes benchmarks/results/ngram-quality-TOKENIZER.json (or
ngram-counting-speed.json with --speed).

--speed: ngram_counts.count_ngrams on the char ids of the whole corpus, and of the corpus repeated
4 and 16 times (up to 17.8M tokens: the same distinct n-grams, a longer stream), timed (best of 2,
wall and CPU time: the machine is shared) and with numpy's peak allocation (tracemalloc): the stream
is read in blocks, so the peak grows with the distinct n-grams, not with the stream.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import time
import tracemalloc

from common import SHARED_DATA, WORK, shared_file, tinyshakespeare_splits, write_result


def quality(args) -> None:
    import seqtasks

    train, valid = tinyshakespeare_splits()
    rows = []
    for order in [int(o) for o in args.orders.split(",")]:
        out = WORK / f"ngram-{args.tokenizer}-{order}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
        start = time.monotonic()
        run = seqtasks.train("lm", out=out, arch="ngram", order=order, smoothing=args.smoothing, data=str(train),
                             valid=str(valid), tokenizer=args.tokenizer, vocab_size=args.vocab_size, verbose=0)
        seconds = time.monotonic() - start
        metrics = run.evaluate(str(valid))
        row = run.directory.read_history()[0]
        rows.append({"order": order, "nats_per_char": round(metrics["bpc"] * math.log(2), 4),
                     "bpc": round(metrics["bpc"], 4), "perplexity_per_token": round(metrics["perplexity"], 3),
                     "tokens": metrics["tokens"], "characters": metrics["characters"], "ngrams": int(row["ngrams"]),
                     "count_tokens_per_second": int(row["tokens_per_second"]), "train_seconds": round(seconds, 2),
                     "evaluate_seconds": run.directory.read_metrics()["seconds"], "run": str(run.path)})
        print(rows[-1], flush=True)
    write_result(f"ngram-quality-{args.tokenizer}{'' if args.smoothing == 'kneser-ney' else '-' + args.smoothing}",
                 {"data": "tiny-shakespeare, first 90% of the characters / last 10%", "tokenizer": args.tokenizer,
                  "vocab_size": args.vocab_size,
                  "smoothing": args.smoothing, "orders": rows})


def speed(args) -> None:
    import numpy as np

    from seqtasks import ngram_counts

    text = shared_file("lm", "tinyshakespeare.txt").read_text(encoding="utf-8")
    alphabet = {c: i + 3 for i, c in enumerate(sorted(set(text)))}  # ids as the char tokenizer's: 3 specials first
    ids = np.fromiter((alphabet[c] for c in text), np.int32, len(text))
    vocab = len(alphabet) + 3
    rows = []
    for repeats in (1, 4, 16):
        stream = np.tile(ids, repeats)
        for order in (3, 5, 7):
            times, cpu = [], []
            for _ in range(2):
                start, start_cpu = time.perf_counter(), time.process_time()
                tables = ngram_counts.count_ngrams(stream, order, vocab)
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
            tracemalloc.start()
            ngram_counts.count_ngrams(stream, order, vocab)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            rows.append({"tokens": len(stream), "order": order, "seconds": round(min(times), 3),
                         "tokens_per_second": int(len(stream) / min(times)),
                         # numpy's sort runs on one thread: per CPU second is the speed of an idle core
                         "tokens_per_cpu_second": int(len(stream) / min(cpu)),
                         "distinct_ngrams": int(sum(len(keys) for keys, _ in tables)),
                         "peak_numpy_mb": round(peak / 2 ** 20, 1),
                         "load_average_1min": round(os.getloadavg()[0], 1)})  # the machine is shared
            print(rows[-1], flush=True)
    write_result("ngram-counting-speed", {"data": str(SHARED_DATA / "lm" / "tinyshakespeare.txt"),
                                          "block_tokens": ngram_counts.BLOCK, "rows": rows})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default="char", choices=("char", "word", "spm"))
    parser.add_argument("--orders", default="3,4,5,6,7")
    parser.add_argument("--vocab-size", type=int, default=0, help="the tokenizer's (0: its default)")
    parser.add_argument("--smoothing", default="kneser-ney", choices=("kneser-ney", "witten-bell", "add-k"))
    parser.add_argument("--speed", action="store_true", help="counting throughput and memory only")
    args = parser.parse_args()
    speed(args) if args.speed else quality(args)


if __name__ == "__main__":
    main()
