"""Make the bundled demo data of `seqtasks train translate`: English -> "Toyish", a rule-based language.

    python data/make_toy_translation.py        # rewrites data/toy_translation/{train,valid,test}.tsv.gz

English sentences are generated from a small grammar and translated by rules, so the pairs are exact,
free of any license, and learnable in minutes. Toyish differs from English in ways that make a model
learn more than a word-for-word dictionary:
  - its own words for every English word (a fixed lexicon);
  - word order: the place phrase comes first, then subject - object - verb (SOV);
  - adjectives follow their noun; numbers precede it;
  - the definite article is a suffix on the noun (-ka), the indefinite one is dropped;
  - plural nouns take -i; verbs take a tense suffix (-na present, -ta past) and -r after a plural subject;
  - negation is the particle "ne" before the verb (English "does not" / "did not").
Example:  the small cats saw a red ball near the river .  ->  nel riva-ka , miu-i-ka pik bal rud vida-ta-r .
The generator is seeded: the same script gives the same files.
"""
from __future__ import annotations

import gzip
import random
from pathlib import Path

NOUNS = {  # english singular: (english plural, toyish)
    "dog": ("dogs", "hundo"), "cat": ("cats", "miu"), "bird": ("birds", "piko"), "horse": ("horses", "kaval"),
    "child": ("children", "nino"), "woman": ("women", "dama"), "man": ("men", "viro"), "teacher": ("teachers", "lerko"),
    "farmer": ("farmers", "agro"), "king": ("kings", "rega"), "ball": ("balls", "bal"), "apple": ("apples", "pomo"),
    "book": ("books", "libo"), "letter": ("letters", "skribo"), "house": ("houses", "domo"), "boat": ("boats", "navo"),
    "flower": ("flowers", "floro"), "cake": ("cakes", "torta"), "song": ("songs", "kanto"), "key": ("keys", "klavo"),
}
ANIMATE = ["dog", "cat", "bird", "horse", "child", "woman", "man", "teacher", "farmer", "king"]
ADJECTIVES = {"big": "gros", "small": "pik", "red": "rud", "green": "verd", "old": "anti", "young": "jun",
              "happy": "felo", "quiet": "kalm", "clever": "saga", "tired": "lasa"}
VERBS = {  # base: (3rd singular, past, toyish stem)
    "see": ("sees", "saw", "vida"), "find": ("finds", "found", "trova"), "like": ("likes", "liked", "ama"),
    "carry": ("carries", "carried", "porta"), "want": ("wants", "wanted", "vola"), "take": ("takes", "took", "prena"),
    "give away": ("gives away", "gave away", "dona"), "paint": ("paints", "painted", "pinta"),
    "hide": ("hides", "hid", "kasa"), "watch": ("watches", "watched", "spekta"),
}
PLACES = {"in the garden": ("in", "gardo"), "near the river": ("nel", "riva"), "on the hill": ("sur", "kolo"),
          "at the market": ("ce", "merko"), "under the bridge": ("sub", "ponto"), "in the forest": ("in", "silva")}
NUMBERS = {"two": "du", "three": "tri", "four": "kvar"}


def noun_phrase(rng: random.Random, nouns: list[str]) -> tuple[str, str, bool]:
    """(english, toyish, plural)."""
    noun = rng.choice(nouns)
    plural = rng.random() < 0.4
    adjectives = rng.sample(sorted(ADJECTIVES), k=rng.choice([0, 0, 1, 1, 2]))
    english_noun, toyish_noun = (NOUNS[noun][0] if plural else noun), NOUNS[noun][1] + ("-i" if plural else "")
    article = rng.choice(["the", "the", "a"] if not plural else ["the", "the", "some"] + list(NUMBERS))
    if article == "the":
        toyish_noun += "-ka"
    words = [*adjectives, english_noun]
    if article == "a" and words[0][0] in "aeiou":
        article = "an"
    english = " ".join([article, *words])
    toyish = " ".join(([NUMBERS[article]] if article in NUMBERS else []) + [toyish_noun]
                      + [ADJECTIVES[a] for a in adjectives])
    return english, toyish, plural


def sentence(rng: random.Random) -> tuple[str, str]:
    subject, subject_toy, plural = noun_phrase(rng, ANIMATE)
    obj, obj_toy, _ = noun_phrase(rng, sorted(NOUNS))
    verb = rng.choice(sorted(VERBS))
    third, past, stem = VERBS[verb]
    tense = rng.choice(["present", "past"])
    negated = rng.random() < 0.2
    if negated:
        auxiliary = "did not" if tense == "past" else ("do not" if plural else "does not")
        english_verb = f"{auxiliary} {verb}"
    else:
        english_verb = past if tense == "past" else (verb if plural else third)
    toy_verb = stem + ("-ta" if tense == "past" else "-na") + ("-r" if plural else "")
    english = [subject, english_verb, obj]
    toyish = [subject_toy, obj_toy] + (["ne"] if negated else []) + [toy_verb]
    if rng.random() < 0.5:
        place = rng.choice(sorted(PLACES))
        preposition, place_noun = PLACES[place]
        english.append(place)
        toyish = [f"{preposition} {place_noun}-ka ,"] + toyish
    return " ".join(english) + " .", " ".join(toyish) + " ."


def main() -> None:
    rng = random.Random(20240601)
    seen: set[str] = set()
    pairs: list[tuple[str, str]] = []
    while len(pairs) < 22000:
        english, toyish = sentence(rng)
        if english not in seen:
            seen.add(english)
            pairs.append((english, toyish))
    folder = Path(__file__).resolve().parent / "toy_translation"
    folder.mkdir(exist_ok=True)
    splits = {"train": pairs[:20000], "valid": pairs[20000:21000], "test": pairs[21000:]}
    for name, rows in splits.items():
        # mtime=0: the same pairs give byte-identical files
        with gzip.GzipFile(folder / f"{name}.tsv.gz", "wb", mtime=0) as raw:
            raw.write("".join(f"{en}\t{toy}\n" for en, toy in rows).encode("utf-8"))
    print({name: len(rows) for name, rows in splits.items()})


if __name__ == "__main__":
    main()
