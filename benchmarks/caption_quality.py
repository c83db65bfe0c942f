"""Q-cap: Flickr8k subset (1,000 images), test BLEU-4 after a fixed training budget, beside the best
single constant caption.

    python benchmarks/caption_quality.py --arch lstm --minutes 30
    python benchmarks/caption_quality.py --arch transformer --minutes 30
    python benchmarks/caption_quality.py --arch lstm --evaluate benchmarks/runs/caption-lstm-...   # rescore

Splits ../shared/data/captioning/flickr8k_1k/ by image file name: the first 800 images train, the
next 100 validate, the last 100 test (five captions each). Trains with
seqtasks/configs/caption-flickr8k-ARCH.toml, then chooses the decoding on the validation images
(beam width and length penalty, from a small grid, by validation BLEU-4), captions the test images
with it and scores BLEU-1..4 against all five references (seqtasks' normalization: lowercased
words and punctuation, then sacreBLEU); greedy and beam 3 (length penalty 1) are reported beside it.
The baseline captions every test image with one and the same training caption: the one with the
best BLEU-4 on the test images (the "best single constant caption"), and, as an honest version of
it, the one with the best BLEU-4 on the validation images. A ceiling beside it: a perfect three-way
recognizer of the subject (dog, child, anything else; read from each test image's references) that
gives each image the best training caption of its subject; and how often the model's test captions
name each subject, for the images that show it and for the others. `--evaluate RUN` skips training and
scores a run this script trained earlier. Writes benchmarks/results/caption-quality-ARCH.json.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import math
from collections import Counter
from pathlib import Path

from common import ROOT, WORK, shared_file, write_result

TARGET_BLEU4 = 15.0
TARGET_BLEU4_PRETRAINED = 17.0  # with an ImageNet backbone (issue 18)
DECODING_GRID = [(1, 1.0)] + [(beam, penalty) for beam in (3, 5, 10) for penalty in (0.0, 0.5, 1.0, 1.5)]


def flickr_splits() -> tuple[Path, dict[str, Path]]:
    """The image folder and train/valid/test caption tables (800/100/100 images by file name)."""
    folder = shared_file("captioning", "flickr8k_1k")
    with open(folder / "captions.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    images = sorted({row["image"] for row in rows})
    parts = {"train": set(images[:800]), "valid": set(images[800:900]), "test": set(images[900:])}
    out = WORK / "data"
    out.mkdir(parents=True, exist_ok=True)
    tables = {}
    for name, members in parts.items():
        tables[name] = out / f"flickr8k-{name}.csv"
        with open(tables[name], "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["image", "caption"])
            writer.writerows((row["image"], row["caption"]) for row in rows if row["image"] in members)
    return folder / "images", tables


def references(table: Path) -> list[list[str]]:
    grouped: dict[str, list[str]] = {}
    with open(table, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            grouped.setdefault(row["image"], []).append(row["caption"])
    return list(grouped.values())


def best_constant_caption(candidates: list[str], refs: list[list[str]], shortlist: int = 50) -> tuple[str, float]:
    """The candidate that, given as the caption of every image, scores the best BLEU-4.

    Scoring thousands of candidates with sacreBLEU takes many minutes, so a quick BLEU-4 on the
    normalized words ranks them all and sacreBLEU decides among the `shortlist` best."""
    from seqtasks.captioning import caption_scores, normalize

    refs_words = [[normalize(r, True).split() for r in image_refs] for image_refs in refs]
    # per image and n-gram order: the most times each n-gram occurs in one reference (BLEU's clipping)
    most = [[_max_counts(words, n) for n in range(1, 5)] for words in refs_words]
    lengths = [[len(words) for words in image_refs] for image_refs in refs_words]

    def quick_bleu4(candidate: str) -> float:
        words = normalize(candidate, True).split()
        matched, total = [0] * 4, [0] * 4
        counts = [_ngram_counts(words, n) for n in range(1, 5)]
        reference_length = 0
        for image_most, image_lengths in zip(most, lengths):
            reference_length += min(image_lengths, key=lambda length: (abs(length - len(words)), length))
            for n in range(4):
                matched[n] += sum(min(c, image_most[n].get(g, 0)) for g, c in counts[n].items())
                total[n] += max(len(words) - n, 0)
        if min(matched) == 0:
            return 0.0
        log_precision = sum(math.log(m / t) for m, t in zip(matched, total)) / 4
        hypothesis_length = len(words) * len(refs)
        brevity = min(0.0, 1 - reference_length / hypothesis_length)
        return 100 * math.exp(log_precision + brevity)

    ranked = sorted(dict.fromkeys(candidates), key=quick_bleu4, reverse=True)[:shortlist]
    scored = [(caption_scores([c] * len(refs), refs, lowercase=True)["bleu4"], c) for c in ranked]
    best_score, best = max(scored, key=lambda item: item[0])
    return best, best_score


# what an image shows, read from its references: the first subject at least two of them name
SUBJECTS = {"dog": {"dog", "dogs", "puppy"},
            "child": {"boy", "boys", "girl", "girls", "child", "children", "kid", "kids"}}


def subject_of(image_refs: list[str]) -> str:
    from seqtasks.captioning import normalize

    words = [set(normalize(r, True).split()) for r in image_refs]
    return next((name for name, names in SUBJECTS.items() if sum(bool(w & names) for w in words) >= 2), "other")


def subject_oracle(train_refs: list[list[str]], test_refs: list[list[str]]) -> tuple[dict[str, str], float]:
    """A ceiling for captioners that only tell a few subjects apart: each test image gets the best
    constant caption of the training images of its subject (dog, child, other), the subject read from
    the test image's own references, i.e. a perfect three-way classifier. (Best caption per subject,
    BLEU-4 of the test captions.)"""
    from seqtasks.captioning import caption_scores

    groups: dict[str, list[list[str]]] = {}
    for image_refs in train_refs:
        groups.setdefault(subject_of(image_refs), []).append(image_refs)
    best = {name: best_constant_caption([c for refs in members for c in refs], members)[0]
            for name, members in groups.items()}
    hypotheses = [best[subject_of(image_refs)] for image_refs in test_refs]
    return best, caption_scores(hypotheses, test_refs, lowercase=True)["bleu4"]


def subject_recognition(captions: list[str], refs: list[list[str]]) -> dict[str, dict[str, int]]:
    """How often the captions name each subject: of the images that show it (by subject_of), and of
    the others."""
    from seqtasks.captioning import normalize

    subjects = [subject_of(image_refs) for image_refs in refs]
    words = [set(normalize(caption, True).split()) for caption in captions]
    counts = {}
    for name, names in SUBJECTS.items():
        named = [bool(w & names) for w in words]
        counts[name] = {"images": subjects.count(name),
                        "named": sum(n and s == name for n, s in zip(named, subjects)),
                        "named_for_other_images": sum(n and s != name for n, s in zip(named, subjects))}
    return counts


def run_captions(run, images: Path, table: Path, beam: int, penalty: float) -> tuple[list[str], list[list[str]]]:
    """The run's caption of each image of `table` (as evaluate makes them), and the references."""
    from seqtasks.image_pipeline import decoded_images
    from seqtasks.readers.images import read_captions
    from seqtasks.tasks.caption import image_size

    data = decoded_images(read_captions(str(table), str(images), "test captions"), image_size(run.settings))
    found = run.task.captioner(run, penalty).caption(data.pixels[data.rows], beam=beam)
    return [c[0].text for c in found], [list(captions) for captions in data.images.captions]


def _ngram_counts(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def _max_counts(references: list[list[str]], n: int) -> dict:
    most: Counter = Counter()
    for words in references:
        most |= _ngram_counts(words, n)
    return most


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["lstm", "transformer"], required=True)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--config", metavar="TOML", help="train with this config (a path or an installed name) instead of "
                        "seqtasks/configs/caption-flickr8k-ARCH.toml (for trials)")
    parser.add_argument("--evaluate", metavar="RUN", help="score this earlier run of the script; no training")
    parser.add_argument("--baseline-only", action="store_true", help="only score the constant-caption baseline")
    args = parser.parse_args()

    import seqtasks
    from seqtasks.config import find_config
    from seqtasks.captioning import caption_scores

    images, tables = flickr_splits()
    train_refs = references(tables["train"])
    train_captions = [c for caps in train_refs for c in caps]
    test_refs, valid_refs = references(tables["test"]), references(tables["valid"])
    oracle, oracle_bleu4 = best_constant_caption(train_captions, test_refs)
    chosen, _ = best_constant_caption(train_captions, valid_refs)
    by_subject, subject_bleu4 = subject_oracle(train_refs, test_refs)
    baseline = {"best_constant_caption": oracle, "best_constant_bleu4": round(oracle_bleu4, 2),
                "valid_chosen_constant_caption": chosen,
                "valid_chosen_constant_bleu4": round(caption_scores([chosen] * len(test_refs), test_refs, True)["bleu4"], 2),
                "subject_oracle_captions": by_subject, "subject_oracle_bleu4": round(subject_bleu4, 2)}
    print(baseline, flush=True)
    if args.baseline_only:
        return

    config = find_config(args.config or f"caption-flickr8k-{args.arch}").resolve()
    if args.evaluate:
        run = seqtasks.load(args.evaluate)
    else:
        out = WORK / f"caption-{args.arch}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
        run = seqtasks.train("caption", out=out, config_file=str(config), images=str(images),
                             captions=str(tables["train"]), valid=str(tables["valid"]), max_time=args.minutes,
                             verbose=1)

    def scores(table: str, beam: int, penalty: float) -> dict:
        return run.evaluate(images=str(images), captions=str(tables[table]), beam=beam, length_penalty=penalty)

    on_valid = {(beam, penalty): scores("valid", beam, penalty) for beam, penalty in DECODING_GRID}
    for (beam, penalty), metrics in on_valid.items():
        print(f"validation: beam {beam}, length penalty {penalty}: BLEU-4 {metrics['bleu4']:.2f}, "
              f"{metrics['words_per_caption']} words per caption", flush=True)
    beam, penalty = max(on_valid, key=lambda setting: on_valid[setting]["bleu4"])
    metrics = scores("test", beam, penalty)
    greedy, beam3 = scores("test", 1, 1.0), scores("test", 3, 1.0)
    recognition = subject_recognition(*run_captions(run, images, tables["test"], beam, penalty))
    state = run.directory.read_train_state()
    settings = run.settings
    images_per_step = settings.batch_size if settings.batch_by_image else None
    captions_per_step = (settings.batch_size * len(train_captions) / len(train_refs) if settings.batch_by_image
                         else settings.batch_size)
    name = Path(args.config).stem.removeprefix("caption-flickr8k-") if args.config else args.arch
    target = TARGET_BLEU4 if settings.backbone == "cnn" or settings.weights == "none" else TARGET_BLEU4_PRETRAINED
    write_result(f"caption-quality-{name}", {
        "target_id": "Q-cap", "arch": args.arch, "config": str(config.relative_to(ROOT) if config.is_relative_to(ROOT) else config),
        "precision": run.record["resolved"]["precision"], "beam": beam, "length_penalty": penalty,
        **{k: round(metrics[k], 2) for k in ("bleu1", "bleu2", "bleu3", "bleu4")},
        "words_per_caption": metrics["words_per_caption"],
        "bleu4_greedy": round(greedy["bleu4"], 2), "bleu4_beam3": round(beam3["bleu4"], 2),
        "valid_bleu4_by_decoding": {f"beam {b}, length penalty {p}": round(m["bleu4"], 2)
                                    for (b, p), m in on_valid.items()},
        "target_bleu4": target, "met": metrics["bleu4"] >= target, **baseline,
        "test_subjects_named": recognition,
        "parameters": run.model.count_params(), "steps": state["global_step"],
        "batch_by_image": settings.batch_by_image,
        "images_seen": state["global_step"] * (images_per_step or settings.batch_size),
        "captions_seen": round(state["global_step"] * captions_per_step),
        "train_minutes": round(state["elapsed_seconds"] / 60, 2), "run": str(run.path),
        "test_images": metrics["images"],
    })


if __name__ == "__main__":
    main()
