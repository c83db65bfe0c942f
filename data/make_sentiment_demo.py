"""Generate data/sentiment_demo.tsv: a synthetic, license-free sentiment set for `seqtasks train classify`.

    python data/make_sentiment_demo.py        # rewrites sentiment_demo.tsv (deterministic: seed 0)

Reviews of made-up films, books and restaurants, labeled positive or negative. The label is not a
bag of words: negation flips an opinion ("not good", "never boring"), in "X but Y" the clause after
"but" decides, and intensifiers and neutral filler vary the wording, so a model must read the order
of the words. Written from templates; no text from any other source.
"""
from __future__ import annotations

import random
from pathlib import Path

POSITIVE = ["good", "great", "wonderful", "charming", "delightful", "moving", "clever", "superb", "enjoyable",
            "fresh", "gripping", "beautiful", "funny", "warm", "brilliant", "solid"]
NEGATIVE = ["bad", "awful", "dull", "boring", "clumsy", "tedious", "messy", "weak", "bland", "painful", "silly",
            "flat", "lifeless", "forgettable", "shallow", "stale"]
SUBJECTS = {"film": ["the film", "this movie", "the plot", "the acting", "the ending", "the score", "the script"],
            "book": ["the novel", "this book", "the prose", "the story", "the last chapter", "the characters"],
            "food": ["the food", "this place", "the service", "the dessert", "the soup", "the menu"]}
INTENSIFIERS = ["", "", "", "really ", "very ", "quite ", "truly ", "rather "]
NEGATIONS = ["not ", "never ", "hardly ", "not at all "]
OPENERS = ["", "", "", "honestly , ", "overall , ", "i think ", "to be fair , ", "in the end , ", "frankly , "]
CLOSERS = ["", "", "", " .", " !", " , to be honest .", " if you ask me .", " for what it is ."]


def opinion(rng: random.Random, subject: str, positive: bool) -> str:
    """A clause whose polarity is `positive`, sometimes by negating the opposite word."""
    if rng.random() < 0.3:
        word = rng.choice(NEGATIVE if positive else POSITIVE)
        return f"{subject} was {rng.choice(NEGATIONS)}{word}"
    word = rng.choice(POSITIVE if positive else NEGATIVE)
    verb = rng.choice(["was", "is", "felt", "seemed"])
    return f"{subject} {verb} {rng.choice(INTENSIFIERS)}{word}"


def review(rng: random.Random) -> tuple[str, str]:
    positive = rng.random() < 0.5
    subjects = SUBJECTS[rng.choice(sorted(SUBJECTS))]
    first, second = rng.sample(subjects, 2)
    if rng.random() < 0.4:
        # the clause after "but" carries the verdict; the one before says the opposite
        text = f"{opinion(rng, first, not positive)} but {opinion(rng, second, positive)}"
    elif rng.random() < 0.5:
        text = f"{opinion(rng, first, positive)} and {opinion(rng, second, positive)}"
    else:
        text = opinion(rng, first, positive)
    return f"{rng.choice(OPENERS)}{text}{rng.choice(CLOSERS)}", "positive" if positive else "negative"


def main(count: int = 4000, seed: int = 0) -> None:
    rng = random.Random(seed)
    rows = ["text\tlabel"] + ["\t".join(review(rng)) for _ in range(count)]
    path = Path(__file__).resolve().parent / "sentiment_demo.tsv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    print(f"wrote {count} reviews to {path}")


if __name__ == "__main__":
    main()
