"""P-scale: tokenizing speed and memory on corpora of many lines and of one line, before vs after.

    python benchmarks/scale.py --megabytes 50 --tokenizers char,word --before 10833ff

Builds two corpora of the given size from tiny-shakespeare repeated with per-copy noise (so
SentencePiece cannot cheat on exact repeats): "lines" (its own short lines) and "one line" (the same
text with every newline a space: a file with no line end). Then, for each tokenizer (trained once on
tiny-shakespeare) and corpus, in fresh subprocesses side by side, the code of this checkout ("after")
and of the commit `--before` ("before", extracted with git archive): opens the corpus as a
TextSource and encodes it with encode_corpus into an empty cache. Measures MB/s (corpus bytes over
the encode_corpus wall time, and over its CPU time, which other work sharing the cores inflates far
less) and the peak memory the encoding adds (ru_maxrss at the end minus
ru_maxrss after the imports, which hold TensorFlow). Targets: after ≥ 4x before in MB/s for char and
word; peak memory for the one-line corpus about that of the many-line one.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tarfile
import io

from common import ROOT, WORK, shared_file, write_result

CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, {root!r})
import seqtasks
from seqtasks.readers import open_text_source
from seqtasks.tokenizers import train_tokenizer
from seqtasks.pipeline import encode_corpus
text = open({training!r}, encoding="utf-8").read()
tokenizer = train_tokenizer({kind!r}, iter(text.splitlines(keepends=True)))
source = open_text_source({corpus!r})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start, cpu_start = time.perf_counter(), time.process_time()
encoded = encode_corpus(source, tokenizer, cache_dir={cache!r}, show_progress=False)
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": seconds, "cpu_seconds": cpu_seconds, "tokens": len(encoded), "added_rss_mb": (peak - before) / 1024,
                  "peak_rss_mb": peak / 1024}}))
"""


def build_corpus(path, megabytes: float, text: str, one_line: bool) -> None:
    rng = random.Random(int(megabytes * 1000))
    lines = text.splitlines(keepends=True)
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < megabytes * 1_000_000:
            start = rng.randrange(len(lines) - 200)
            chunk = "".join(lines[start:start + 200])
            chunk = chunk.replace("the", rng.choice(["the", "thy", "thee", "that"]))
            if one_line:
                chunk = chunk.replace("\n", " ")
            out.write(chunk)
            written += len(chunk.encode("utf-8"))


def extract_commit(commit: str, folder) -> str:
    """The seqtasks package of `commit`, extracted into folder/COMMIT (the code 'before')."""
    target = folder / f"code-{commit}"
    if not (target / "seqtasks").is_dir():
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "seqtasks"],
                                 capture_output=True, check=True).stdout
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(target)
    return str(target)


def measure(code_root: str, kind: str, corpus, training, cache) -> dict:
    subprocess.run(["rm", "-rf", str(cache)], check=True)
    child = CHILD.format(root=code_root, kind=kind, corpus=str(corpus), training=str(training), cache=str(cache))
    output = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout
    subprocess.run(["rm", "-rf", str(cache)], check=True)
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=float, default=50, help="size of each corpus")
    parser.add_argument("--tokenizers", default="char,word", help="comma-separated: char, word, whitespace, spm")
    parser.add_argument("--before", default="10833ff", help="the commit to compare with (git archive)")
    parser.add_argument("--repeats", type=int, default=2,
                        help="before/after pairs per row, alternated; the fastest of each side counts")
    args = parser.parse_args()
    training = shared_file("lm", "tinyshakespeare.txt")
    text = training.read_text(encoding="utf-8")
    folder = WORK / "scale"
    folder.mkdir(parents=True, exist_ok=True)
    before_root = extract_commit(args.before, folder)
    corpora = {}
    for shape in ("lines", "one line"):
        corpus = folder / f"corpus-{args.megabytes:g}mb-{shape.replace(' ', '')}.txt"
        if not corpus.exists():
            build_corpus(corpus, args.megabytes, text, one_line=shape == "one line")
        corpora[shape] = corpus
    rows = []
    for kind in args.tokenizers.split(","):
        for shape, corpus in corpora.items():
            megabytes = corpus.stat().st_size / 1e6
            row = {"tokenizer": kind, "corpus": shape, "size_mb": round(megabytes, 1)}
            for repeat in range(args.repeats):
                for label, code_root in (("before", before_root), ("after", str(ROOT))):
                    measured = measure(code_root, kind, corpus, training, folder / "cache")
                    for unit, seconds in (("mb_per_s", measured["seconds"]), ("cpu_mb_per_s", measured["cpu_seconds"])):
                        row[f"{label}_{unit}"] = max(row.get(f"{label}_{unit}", 0), round(megabytes / seconds, 2))
                    row[f"{label}_added_rss_mb"] = round(measured["added_rss_mb"], 1)
                    row[f"{label}_tokens"] = measured["tokens"]
            row["speedup"] = round(row["after_mb_per_s"] / row["before_mb_per_s"], 2)
            # CPU time: what the code costs, whatever else shares the machine's cores
            row["cpu_speedup"] = round(row["after_cpu_mb_per_s"] / row["before_cpu_mb_per_s"], 2)
            rows.append(row)
            print(row, flush=True)
    write_result("scale", {
        "target_id": "P-scale", "before": args.before, "rows": rows,
        "min_speedup_char_word": min((r["speedup"] for r in rows if r["tokenizer"] in ("char", "word")), default=None),
        "min_cpu_speedup_char_word": min((r["cpu_speedup"] for r in rows if r["tokenizer"] in ("char", "word")),
                                         default=None)})


if __name__ == "__main__":
    main()
