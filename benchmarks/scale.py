"""P-scale: encoding a growing corpus keeps its rate and keeps memory flat.

    python benchmarks/scale.py --sizes 10,100,1000 --tokenizer spm

For each size (MB), builds a corpus by repeating tiny-shakespeare with per-copy noise (so SentencePiece
cannot cheat on exact repeats), then in a fresh subprocess: opens it as a TextSource, encodes it with
a tokenizer trained once on the first 10 MB, and measures MB/s and peak RSS (ru_maxrss). Targets: ≥ 5 MB/s
on 2 cores; peak RSS at the largest size ≤ 1.5x the smallest.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys

from common import WORK, shared_file, write_result

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import seqtasks
from seqtasks.readers import open_text_source
from seqtasks.tokenizers import load_tokenizer
from seqtasks.pipeline import encode_corpus
source = open_text_source({corpus!r})
tokenizer = load_tokenizer({tokenizer_dir!r})
start = time.perf_counter()
encoded = encode_corpus(source, tokenizer, cache_dir={cache!r}, show_progress=False)
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "tokens": len(encoded), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def build_corpus(path, megabytes: int, text: str) -> None:
    rng = random.Random(megabytes)
    lines = text.splitlines(keepends=True)
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < megabytes * 1_000_000:
            start = rng.randrange(len(lines) - 200)
            chunk = "".join(lines[start:start + 200])
            chunk = chunk.replace("the", rng.choice(["the", "thy", "thee", "that"]))
            out.write(chunk)
            written += len(chunk.encode("utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000", help="corpus sizes in MB")
    parser.add_argument("--tokenizer", choices=["char", "spm"], default="spm")
    args = parser.parse_args()
    sys.path.insert(0, str(WORK.parent.parent))
    import seqtasks  # noqa: F401
    from seqtasks.tokenizers import train_tokenizer

    from common import ROOT

    text = shared_file("lm", "tinyshakespeare.txt").read_text(encoding="utf-8")
    folder = WORK / "scale"
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = folder / f"tokenizer-{args.tokenizer}"
    tokenizer = train_tokenizer(args.tokenizer, iter(text.splitlines(keepends=True)), vocab_size=8000 if args.tokenizer == "spm" else None)
    tokenizer.save(tokenizer_dir)
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        corpus = folder / f"corpus-{size}mb.txt"
        if not corpus.exists():
            build_corpus(corpus, size, text)
        cache = folder / f"cache-{size}-{args.tokenizer}"
        subprocess.run(["rm", "-rf", str(cache)], check=True)
        child = CHILD.format(root=str(ROOT), corpus=str(corpus), tokenizer_dir=str(tokenizer_dir), cache=str(cache))
        output = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout
        measured = json.loads(output.strip().splitlines()[-1])
        megabytes = corpus.stat().st_size / 1e6
        rows.append({"size_mb": round(megabytes, 1), "mb_per_s": round(megabytes / measured["seconds"], 2),
                     "tokens": measured["tokens"], "peak_rss_mb": round(measured["peak_rss_mb"], 1)})
        print(rows[-1], flush=True)
        subprocess.run(["rm", "-rf", str(cache)], check=True)
    write_result(f"scale-{args.tokenizer}", {
        "target_id": "P-scale", "tokenizer": args.tokenizer, "rows": rows,
        "min_mb_per_s": min(r["mb_per_s"] for r in rows),
        "rss_growth": round(rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"], 2)})


if __name__ == "__main__":
    main()
