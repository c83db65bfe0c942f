"""The torch side of benchmarks/backbone_check.py: the ImageNet logits of EfficientNet-Lite0 and torchvision's
MobileNetV2 as torch computes them from the wheels' `.pth` files. Needs torch, so run it in a separate
virtual environment (seqtasks itself never imports torch):

    python -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch numpy
    /tmp/torch-venv/bin/python benchmarks/reference/torch_backbones.py PIXELS.npy PTH_LITE0 PTH_MOBILENET OUT.npz

PIXELS.npy: (N, 224, 224, 3) float32 RGB in [0, 255] (backbone_check.py --save-pixels writes it). The
networks are written out here in plain torch (no torchvision, no efficientnet package): Lite0 with
TensorFlow "same" padding, as its weights were trained.
"""
import sys

import numpy as np
import torch
import torch.nn.functional as F

LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
                (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
MOBILENET_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                    (6, 320, 1, 1))


def same_conv(x, weight, stride, groups=1):
    """TensorFlow's "same": pad total max((ceil(n/s) - 1)·s + k - n, 0), the extra pixel bottom/right."""
    k, n = weight.shape[-1], x.shape[-1]
    total = max((-(-n // stride) - 1) * stride + k - n, 0)
    x = F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2))
    return F.conv2d(x, weight, stride=stride, groups=groups)


def bn(x, s, prefix, eps):
    return F.batch_norm(x, s[prefix + ".running_mean"], s[prefix + ".running_var"], s[prefix + ".weight"],
                        s[prefix + ".bias"], False, 0.0, eps)


def lite0(x, s):
    x = F.relu6(bn(same_conv(x, s["_conv_stem.weight"], 2), s, "_bn0", 1e-3))
    channels, index = 32, 0
    for repeats, kernel, stride, expansion, out in LITE0_STAGES:
        for repeat in range(repeats):
            p, h, st = f"_blocks.{index}.", x, stride if repeat == 0 else 1
            if expansion != 1:
                x = F.relu6(bn(F.conv2d(x, s[p + "_expand_conv.weight"]), s, p + "_bn0", 1e-3))
            x = F.relu6(bn(same_conv(x, s[p + "_depthwise_conv.weight"], st, groups=x.shape[1]), s, p + "_bn1", 1e-3))
            x = bn(F.conv2d(x, s[p + "_project_conv.weight"]), s, p + "_bn2", 1e-3)
            if st == 1 and channels == out:
                x = x + h
            channels, index = out, index + 1
    x = F.relu6(bn(F.conv2d(x, s["_conv_head.weight"]), s, "_bn1", 1e-3))
    return F.linear(x.mean((2, 3)), s["_fc.weight"], s["_fc.bias"])


def mobilenet_v2(x, s):
    x = F.relu6(bn(F.conv2d(x, s["features.0.0.weight"], stride=2, padding=1), s, "features.0.1", 1e-5))
    channels, index = 32, 1
    for expansion, out, repeats, stride in MOBILENET_STAGES:
        for repeat in range(repeats):
            p, h, st = f"features.{index}.conv.", x, stride if repeat == 0 else 1
            if expansion == 1:
                dw, project, norm = "0", "1", "2"
            else:
                x = F.relu6(bn(F.conv2d(x, s[p + "0.0.weight"]), s, p + "0.1", 1e-5))
                dw, project, norm = "1", "2", "3"
            x = F.relu6(bn(F.conv2d(x, s[p + dw + ".0.weight"], stride=st, padding=1, groups=x.shape[1]), s,
                           p + dw + ".1", 1e-5))
            x = bn(F.conv2d(x, s[p + project + ".weight"]), s, p + norm, 1e-5)
            if st == 1 and channels == out:
                x = x + h
            channels, index = out, index + 1
    x = F.relu6(bn(F.conv2d(x, s["features.18.0.weight"]), s, "features.18.1", 1e-5))
    return F.linear(x.mean((2, 3)), s["classifier.1.weight"], s["classifier.1.bias"])


def main():
    pixels_file, lite0_file, mobilenet_file, out = sys.argv[1:5]
    pixels = torch.from_numpy(np.load(pixels_file)).permute(0, 3, 1, 2).contiguous()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        a = lite0((pixels - 127) / 128, torch.load(lite0_file, map_location="cpu", weights_only=True))
        b = mobilenet_v2((pixels / 255 - mean) / std, torch.load(mobilenet_file, map_location="cpu", weights_only=True))
    np.savez(out, **{"efficientnet-lite0": a.numpy(), "mobilenetv2": b.numpy()})


if __name__ == "__main__":
    main()
