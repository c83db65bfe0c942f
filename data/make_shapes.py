"""Make the bundled synthetic captioning set: two coloured shapes per image, captions that say which.

    python data/make_shapes.py                       # rewrites data/shapes/ (the bundled set)
    python data/make_shapes.py --out /tmp/shapes --count 2000 --size 32 --seed 7

Each image shows two shapes side by side (one in the left half, one in the right half) or one above
the other. A shape has a size (small, large), a colour (red, green, blue, yellow) and a form (circle,
square, triangle), drawn anywhere in its half, the two shapes roughly in line (side by side, or one
under the other). Captions name the shapes in reading order (left to right, top to bottom); every
image gets two, worded differently:

    a small red circle left of a large blue square          a large green triangle above a small red square
    a small red circle to the left of a large blue square   a large green triangle on top of a small red square

so a model must see colour, size, form and where things are, and evaluation must accept any of an
image's references. The output is an image folder and a caption table, the format `seqtasks train
caption` reads:  OUT/images/shape_00000.png ...  and  OUT/captions.csv  (`image,caption` header).
Images are rendered with numpy (4x supersampled, so edges are smooth) and written as PNG with zlib
(no imaging library needed); the same seed always gives the same files. Made by this script: no
license restrictions.
"""
from __future__ import annotations

import argparse
import csv
import struct
import zlib
from pathlib import Path

import numpy as np

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 200, 30)}
FORMS = ("circle", "square", "triangle")
SIZES = {"small": 0.13, "large": 0.21}  # half the shape's extent, as a share of the image side
RELATIONS = {"horizontal": ("left of", "to the left of"), "vertical": ("above", "on top of")}
JITTER = 0.06  # how far the two shapes may sit off their shared line
SUPERSAMPLE = 4
BACKGROUND = 245


def inside(form: str, x, y, cx: float, cy: float, r: float):
    """Boolean mask of the points (x, y) inside the shape centred at (cx, cy) with half-extent r."""
    if form == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= r ** 2
    if form == "square":
        side = r * 0.9  # a square of the same half-extent looks larger than the circle: shrink it
        return (np.abs(x - cx) <= side) & (np.abs(y - cy) <= side)
    # an upward triangle: apex at (cx, cy - r), base at y = cy + r·0.8
    top, bottom = cy - r, cy + 0.8 * r
    half_width = r * (y - top) / (bottom - top)
    return (y >= top) & (y <= bottom) & (np.abs(x - cx) <= half_width)


def random_shape(rng: np.random.Generator) -> dict:
    return {"size": str(rng.choice(list(SIZES))), "colour": str(rng.choice(list(COLOURS))),
            "form": str(rng.choice(FORMS))}


def describe(shape: dict) -> str:
    return f"a {shape['size']} {shape['colour']} {shape['form']}"


def render(shapes: list[tuple[dict, float, float]], size: int) -> np.ndarray:
    """An RGB uint8 (size, size, 3) image of the shapes, given with centres in [0, 1] coordinates."""
    fine = size * SUPERSAMPLE
    y, x = np.mgrid[0:fine, 0:fine].astype(np.float32) / fine + 0.5 / fine
    canvas = np.full((fine, fine, 3), BACKGROUND, np.float32)
    for shape, cx, cy in shapes:
        mask = inside(shape["form"], x, y, cx, cy, SIZES[shape["size"]])
        canvas[mask] = COLOURS[shape["colour"]]
    image = canvas.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def make_example(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[str]]:
    """One image and its two captions."""
    first, second = random_shape(rng), random_shape(rng)
    layout = str(rng.choice(list(RELATIONS)))
    # along the layout each shape stays in its half, clear of the border and of the middle line; across
    # it, both sit near one shared line (within ±JITTER), so "left of" never looks like "above"
    widest = max(SIZES[first["size"]], SIZES[second["size"]])
    line = rng.uniform(widest + JITTER + 0.02, 1 - widest - JITTER - 0.02)
    centres = []
    for shape, half in ((first, 0), (second, 1)):
        r = SIZES[shape["size"]]
        along = rng.uniform(half * 0.5 + r + 0.02, half * 0.5 + 0.5 - r - 0.02)
        across = line + rng.uniform(-JITTER, JITTER)
        centres.append((along, across) if layout == "horizontal" else (across, along))
    image = render([(first, *centres[0]), (second, *centres[1])], size)
    return image, [f"{describe(first)} {relation} {describe(second)}" for relation in RELATIONS[layout]]


def png_bytes(image: np.ndarray) -> bytes:
    """An 8-bit RGB PNG of `image` (height, width, 3) uint8: signature, IHDR, one IDAT, IEND."""
    height, width, _ = image.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + image[y].tobytes() for y in range(height))  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, truecolour, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def make_shapes(out: str | Path, count: int, size: int = 64, seed: int = 0, prefix: str = "shape") -> Path:
    """Write OUT/images/PREFIX_NNNNN.png and OUT/captions.csv; returns the captions file."""
    out = Path(out)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        image, captions = make_example(rng, size)
        name = f"{prefix}_{index:05d}.png"
        (images / name).write_bytes(png_bytes(image))
        rows.extend((name, caption) for caption in captions)
    table = out / "captions.csv"
    with open(table, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["image", "caption"])
        writer.writerows(rows)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "shapes"))
    parser.add_argument("--count", type=int, default=600, help="number of images")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    table = make_shapes(args.out, args.count, args.size, args.seed)
    print(f"wrote {args.count} images and {table}")


if __name__ == "__main__":
    main()
