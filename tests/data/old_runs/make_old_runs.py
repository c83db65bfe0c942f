"""Make the run folders in tests/data/old_runs/ and what each gives for fixed inputs (expected.json).

These folders were written by seqtasks before the decoders moved to seqtasks/layers/ (the commit
this script was added in); tests/test_old_runs.py loads them with the current code and checks the
same outputs. Do not run this again with newer code: the point is that the files are old.

    python tests/data/old_runs/make_old_runs.py     # from the repository root
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[2]), str(HERE.parents[1])]  # this checkout's seqtasks; tests/ for conftest

from conftest import TINY_TRAIN  # noqa: E402
from test_old_runs import greedy, teacher_forced  # noqa: E402

RUNS = {
    "lm_transformer": ("lm", dict(arch="transformer", units=8, heads=2, layers=2, seq_len=8, sample_tokens=0)),
    "lm_lstm": ("lm", dict(arch="lstm", units=8, layers=2, seq_len=8, sample_tokens=0)),
    "translate_transformer": ("translate", dict(arch="transformer", units=8, heads=2, layers=2, tokenizer="word",
                                                sample_sentences=0, beam=1)),
    "translate_bahdanau": ("translate", dict(arch="seq2seq", attention="bahdanau", units=8, layers=2,
                                             tokenizer="word", sample_sentences=0, beam=1)),
    "translate_luong": ("translate", dict(arch="seq2seq", attention="luong", input_feeding=True, bidirectional=False,
                                          units=8, layers=1, tokenizer="word", sample_sentences=0, beam=1)),
    "caption_transformer": ("caption", dict(arch="transformer", units=8, heads=2, layers=2, image_size=16,
                                            cnn_blocks=2, cnn_filters=4, flip=False, sample_images=0)),
    "caption_attention": ("caption", dict(arch="lstm", attention=True, units=8, layers=2, image_size=16,
                                          cnn_blocks=2, cnn_filters=4, flip=False, sample_images=0,
                                          initial_state="mean")),
    "caption_show_tell": ("caption", dict(arch="lstm", attention=False, units=8, layers=1, image_size=16,
                                          cnn_blocks=2, cnn_filters=4, flip=False, sample_images=0)),
}
PROMPT = [3, 4, 5, 6]  # token ids every vocabulary here has (ids below 4 are specials in some)
STEPS = 4  # greedy tokens after the prompt: the lm's 8 positions hold them all


def record(task, model, folder):
    """Save the fixed inputs and the logits they give; -> expected.json's entry: greedy tokens and more."""
    prompt = [i % model_vocab(model) for i in PROMPT]
    ids = np.array([prompt, prompt[:2] + [0, 0]], "int32")  # the second row right-padded
    if task == "translate":
        np.save(folder / "source.npy", np.array([prompt[::-1], prompt[:3] + [0]], "int32"))
    if task == "caption":
        np.save(folder / "image.npy", np.random.default_rng(0).uniform(0, 1, (2, 16, 16, 3)).astype("float32"))
    logits, context = teacher_forced(task, model, ids, folder)
    np.save(folder / "logits.npy", np.asarray(logits, "float32"))
    tokens, first_logits = greedy(model, prompt, context, STEPS)
    return {"task": task, "ids": ids.tolist(), "greedy": tokens, "prefill_logits": first_logits,
            "weight_shapes": [list(w.shape) for w in model.weights]}


def slim(folder):
    """Keep what loading reads: no checkpoint, no TensorBoard logs, model.keras deflated (the same
    entries, byte for byte: a .keras file is a zip, and Keras reads a deflated one)."""
    shutil.rmtree(folder / "checkpoints")
    shutil.rmtree(folder / "logs", ignore_errors=True)
    path = folder / "model.keras"
    with zipfile.ZipFile(path) as source:
        entries = [(info, source.read(info.filename)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target:
        for info, data in entries:
            target.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)


def write_data(task, folder):
    """A few examples for TASK (as tests/conftest.py's tiny runs have) -> the data arguments naming them."""
    if task == "lm":
        (folder / "text.txt").write_text("abcdefgh\n" * 60)
        return {"data": str(folder / "text.txt")}
    if task == "translate":
        (folder / "pairs.tsv").write_text("".join(f"{a} {b}\t{b} {a}\n" for a in "abcde" for b in "fghij") * 2)
        return {"data": str(folder / "pairs.tsv")}
    from seqtasks.data.make_shapes import make_shapes

    captions = make_shapes(folder / "shapes", count=16, size=16, seed=0)
    return {"images": str(captions.parent / "images"), "captions": str(captions)}


def model_vocab(model):
    return getattr(model, "vocab_size", None) or model.target_vocab


def main():
    import seqtasks

    expected = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (task, settings) in RUNS.items():
            data_folder = Path(tmp) / name
            data_folder.mkdir()
            data = write_data(task, data_folder)
            out = HERE / name
            shutil.rmtree(out, ignore_errors=True)
            run = seqtasks.train(task, out=str(out), **data, **settings, **TINY_TRAIN)
            expected[name] = record(task, run.model, out)
            slim(out)  # the data paths in config.json name a temporary folder: loading never reads them
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
