"""Caption images with a trained captioner: its conditioning, scoring, attention plots.

A Captioner is captioning's Conditioning for the one text-generation front-end (seqtasks.generation):
an image (pixels, or the path of an image file) has the prompt [BOS], the context of a batch of images
is their grids, `model.encode(pixels)` (encoded ENCODE_BATCH images at a time), and decoding stops at
EOS. The attention map of a caption comes from a teacher-forced pass over it (the same numbers the
decoder saw, since cached decoding equals full recomputation).

Scores compare normalized text: lowercased when the tokenizer lowercases, words and punctuation marks
separated by single spaces (what the word tokenizer's decode gives), so a reference's spacing or case
never costs BLEU. BLEU-n is sacreBLEU's corpus BLEU against all references of each image; exact
match is the share of images whose caption equals one of their references.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from seqtasks import plotting
from seqtasks.errors import UserError
from seqtasks.generation import Generated, Prompt, TextGenerator
from seqtasks.image_pipeline import ImageSet, decode_into
from seqtasks.metrics import bleu_n
from seqtasks.progress import Progress
from seqtasks.tokenizers import BOS_ID, EOS_ID, Tokenizer

ENCODE_BATCH = 32
DECODE_BATCH = 128
EVALUATE_CHUNK = 1024  # images decoded into memory at a time by evaluate
_WORDS = re.compile(r"\w+|[^\w\s]")
_ENCODER_ATTRIBUTE = "_seqtasks_image_encoder"


@dataclass
class Caption(Generated):
    weights: np.ndarray | None = field(default=None, repr=False)  # (tokens + EOS, grid cells)


def read_images(paths: Sequence[str | Path], size: int) -> np.ndarray:
    """The pixels (N, size, size, 3) uint8 of image files, resized; a missing or undecodable file is a UserError."""
    for path in paths:
        if not Path(path).is_file():
            raise UserError("no such image", str(path), "give the paths of JPEG or PNG files")
    pixels = np.zeros((len(paths), size, size, 3), np.uint8)
    failed = decode_into([Path(p) for p in paths], size, pixels)
    if failed:
        raise UserError("cannot decode the image as JPEG, PNG, GIF or BMP", str(paths[failed[0]]), "give an image file")
    return pixels


def normalize(text: str, lowercase: bool) -> str:
    return " ".join(_WORDS.findall(text.lower() if lowercase else text))


def caption_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]], lowercase: bool) -> dict:
    """BLEU-1..4 (sacreBLEU, every reference of an image) and exact match, on normalized text."""
    hypotheses = [normalize(h, lowercase) for h in hypotheses]
    references = [[normalize(r, lowercase) for r in refs] for refs in references]
    most = max(len(refs) for refs in references)
    # sacreBLEU takes reference streams: stream k holds every image's k-th reference (None if it has fewer)
    streams = [[refs[k] if k < len(refs) else None for refs in references] for k in range(most)]
    scores = {f"bleu{n}": bleu_n(hypotheses, streams, n, tokenized=True) for n in range(1, 5)}
    scores["exact_match"] = float(np.mean([h in refs for h, refs in zip(hypotheses, references)]))
    scores["images"] = len(hypotheses)
    return scores


class Captioner:
    """model + tokenizer -> captions of pixel arrays (N, size, size, 3) in [0, 255] (or of image files,
    resized to `image_size`)."""

    stop_ids = (EOS_ID,)
    batch_size = DECODE_BATCH

    def __init__(self, model, tokenizer: Tokenizer, max_new_tokens: int, length_penalty: float = 1.0,
                 image_size: int | None = None):
        self.model, self.tokenizer, self.max_new_tokens = model, tokenizer, max_new_tokens
        self.length_penalty = length_penalty  # beam score = log p / length ** length_penalty
        self.image_size = image_size

    @property
    def defaults(self) -> dict[str, Any]:
        """Greedy, at most max_new_tokens, the run's length penalty for a beam (the caller's options win)."""
        return {"max_new_tokens": self.max_new_tokens, "temperature": 0.0, "length_penalty": self.length_penalty}

    def prompt(self, image: np.ndarray | str | Path) -> Prompt:
        if isinstance(image, (str, Path)):
            if not self.image_size:
                raise ValueError("a Captioner without an image_size captions pixels, not image files")
            image = read_images([image], self.image_size)[0]
        return Prompt([BOS_ID], image)

    def context(self, images: list[np.ndarray]) -> tuple:
        return (self.encode(np.stack(images).astype(np.float32)),)

    def encode(self, pixels: np.ndarray):
        """The grids (N, cells, d) of a batch of images, by one compiled function kept on the model."""
        import tensorflow as tf

        encoder = getattr(self.model, _ENCODER_ATTRIBUTE, None)
        if encoder is None:
            model = self.model
            encoder = tf.function(lambda x: model.encode(x, training=False),
                                  input_signature=(tf.TensorSpec((None, *pixels.shape[1:]), tf.float32),))
            object.__setattr__(self.model, _ENCODER_ATTRIBUTE, encoder)  # not tracked, never saved
        return tf.concat([encoder(tf.constant(pixels[i:i + ENCODE_BATCH], tf.float32))
                          for i in range(0, len(pixels), ENCODE_BATCH)], axis=0)

    def caption(self, pixels: np.ndarray, beam: int = 1, n_best: int = 1, temperature: float = 0.0,
                seed: int | None = None, progress: Progress | None = None) -> list[list[Caption]]:
        """The n_best captions of each image (best first): greedy, beam search, or sampled (temperature > 0)."""
        if n_best > 1 and temperature == 0 and n_best > beam:
            raise UserError(f"--n-best {n_best} needs a beam at least that wide (--beam {beam})",
                            fix=f"pass --beam {n_best} or more, or sample with --temperature")
        generator = TextGenerator(self.model, self)
        options = {"temperature": temperature, "num_return_sequences": n_best, "seed": seed}
        if beam > 1:  # (an explicit beam_width of 1 would mean greedy: no sampling)
            options["beam_width"] = beam
        captions = generator.generate(list(pixels), generator.config(**options), progress=progress)
        return [[Caption(c.text, c.ids, c.score) for c in found] for found in captions]

    def evaluate(self, data: ImageSet, beam: int = 1, progress: Progress | None = None) -> dict[str, Any]:
        """BLEU-1..4 and exact match of the captions of data's images against all their references."""
        found: list[list[Caption]] = []
        for first in range(0, len(data.rows), EVALUATE_CHUNK):  # a chunk of images in memory at a time
            found += self.caption(data.pixels[data.rows[first:first + EVALUATE_CHUNK]], beam=beam, progress=progress)
        scores = caption_scores([c[0].text for c in found], data.images.captions, self.tokenizer.lowercase)
        return {**scores, "beam": beam, "length_penalty": self.length_penalty,
                "words_per_caption": round(float(np.mean([len(c[0].text.split()) for c in found])), 2)}

    def attend(self, pixels: np.ndarray, caption: Caption) -> Caption:
        """Fill in where the decoder looked for each word of the caption (and for its EOS)."""
        grid = self.encode(np.asarray(pixels, np.float32)[None])
        ids = np.array([[BOS_ID, *caption.ids]], np.int32)
        _, weights = self.model.decode(grid, ids)
        if weights is None:
            raise UserError("this model has no attention to draw (an LSTM trained without --attention)",
                            fix="train with --attention, or --arch transformer")
        caption.weights = np.asarray(weights)[0].astype(np.float32)
        return caption

    def plot(self, pixels: np.ndarray, caption: Caption, grid_shape: tuple[int, int], path: str | Path) -> Path:
        """Draw the image, then the image under each word's attention map, to a PNG (needs matplotlib)."""
        plt = plotting.pyplot(path)
        if caption.weights is None:
            self.attend(pixels, caption)
        words = [self.tokenizer.id_to_token(i) for i in caption.ids] + ["<end>"]
        image = np.asarray(pixels, np.float32) / 255.0
        columns = min(5, len(words) + 1)
        rows = -(-(len(words) + 1) // columns)
        figure, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.6 * rows), squeeze=False)
        for axis in axes.flat:
            axis.axis("off")
        axes.flat[0].imshow(image)
        axes.flat[0].set_title(caption.text, fontsize=7, wrap=True)
        height, width = grid_shape
        for axis, word, weights in zip(axes.flat[1:], words, caption.weights):
            axis.imshow(image)
            # each grid cell's weight stretched over the part of the image it covers
            axis.imshow(weights.reshape(height, width), cmap="gray", alpha=0.6, interpolation="bilinear",
                        extent=(-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5), vmin=0.0)
            axis.set_title(word, fontsize=9)
        figure.tight_layout()
        return plotting.save(figure, path)


def caption_lines(result: Any) -> str:
    """A prediction as `seqtasks predict` prints it: the caption, or with --n-best `caption<TAB>score` lines."""
    if isinstance(result, str):
        return result
    return "\n".join(f"{item['caption']}\t{item['score']:.4f}" for item in result)
