"""Write the bundled pairs of `seqtasks train generate` (synthetic, license-free):

    generation_example.jsonl        6000 training pairs (the default --data of `seqtasks train generate`)
    generation_example_test.jsonl    300 test pairs whose prompts are not among the training ones

Each prompt names a word operation and 2 to 4 words; the completion is its result:

    {"prompt": "reverse: owl moon tea", "completion": "tea moon owl"}
    {"prompt": "sort: owl moon tea", "completion": "moon owl tea"}
    {"prompt": "initials: owl moon tea", "completion": "O M T"}

The words are a short list of everyday English words written for this script. The mapping is
deterministic, so a model that learned it reaches exact match 1.0 on the test pairs.

    python data/make_generation_example.py            # rewrites both files
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

WORDS = """
apple bird blue boat bread cake cat cloud coat corn cup desk dog door duck egg farm fish flag frog
gate gold hat hill horse ice jam key kite lake lamp leaf lime milk moon nest nut oak owl pear pen
pig pine rain ring road rose salt sand ship shoe snow sock star sun tea tent toy tree van wave wind
wolf yarn zoo
""".split()

OPERATIONS = {
    "reverse": lambda words: " ".join(reversed(words)),
    "sort": lambda words: " ".join(sorted(words)),
    "initials": lambda words: " ".join(w[0].upper() for w in words),
}


def make_pairs(count: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    pairs, seen = [], set()
    while len(pairs) < count:
        operation = rng.choice(sorted(OPERATIONS))
        words = rng.sample(WORDS, rng.randint(2, 4))
        prompt = f"{operation}: {' '.join(words)}"
        if prompt in seen:
            continue
        seen.add(prompt)
        pairs.append({"prompt": prompt, "completion": OPERATIONS[operation](words)})
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    pairs = make_pairs(args.train + args.test, args.seed)
    for name, part in (("generation_example.jsonl", pairs[:args.train]),
                       ("generation_example_test.jsonl", pairs[args.train:])):
        (args.folder / name).write_text("".join(json.dumps(pair) + "\n" for pair in part), encoding="utf-8")
        print(f"wrote {len(part)} pairs to {args.folder / name}")


if __name__ == "__main__":
    main()
