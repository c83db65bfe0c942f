"""Images -> tf.data for captioning: decode and resize once (cached on disk), then batches of
(pixels or backbone features, caption ids).

    decode      tf.data reads each image file, decodes it (JPEG, PNG, GIF, BMP), resizes it to
                size × size (antialiased; the aspect ratio is not kept) and stores it as uint8 in a
                cache file keyed by the images' contents and the size, read back through a memory map,
                so memory stays flat and later runs skip the work. Files that fail to decode are
                reported by index instead of stopping the pass.
    features    for a frozen backbone: its feature maps of every image (and of its mirror image,
                when training flips images) computed once and cached the same way, keyed by the
                pixels' key and a hash of the backbone's weights.
    batches     (inputs, [BOS] + ids) -> ids + [EOS], padded with 0 to the longest caption of the
                batch; in training, passes shuffled by (seed, pass), grouped by length (seqtasks.batching),
                mirrored left-right at random (tf.image.stateless_random_flip_left_right, or the
                mirrored features), and with `crop_area` < 1 cut to a random box and resized back
                (`random_crops`).
                With `by_image`, a batch holds whole images, each with all of its captions, so a
                trainable CNN runs once per image rather than once per caption.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from seqtasks import disk_cache
from seqtasks.batching import batch_dataset, length_bucketed_batches, pad, stream_batches
from seqtasks.errors import UserError
from seqtasks.pipeline import Progress
from seqtasks.readers.images import CaptionedImages

_DECODE_VERSION = "seqtasks images v1"
_LENGTH_GROUP_BATCHES = 20  # training batches are formed among this many batches' worth of similar-length captions


@dataclass(frozen=True)
class DecodedImages:
    """Pixels (N, size, size, 3) uint8 of the images given (rows of failed images are zeros)."""

    pixels: np.ndarray
    failed: tuple[int, ...]  # indices of the images that could not be decoded
    key: str                 # what identifies these pixels in the cache


def decode_image(path, size: int):
    """tf.data op: the file at `path` as (size, size, 3) uint8 RGB."""
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return resize_image(image, size)


def resize_image(image, size: int):
    """A decoded image (height, width, 3) -> (size, size, 3) uint8, antialiased (the aspect ratio is not kept)."""
    import tensorflow as tf

    image = tf.image.resize(image, (size, size), antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def decode_into(paths: Sequence[Path], size: int, out: np.ndarray, label: str = "decoding images") -> tuple[int, ...]:
    """Decode every image into out[i]; returns the indices of the files that failed to decode."""
    import tensorflow as tf

    indices = np.arange(len(paths), dtype=np.int64)
    dataset = tf.data.Dataset.from_tensor_slices((indices, [str(p) for p in paths]))
    dataset = dataset.map(lambda i, p: (i, decode_image(p, size)), num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=False)
    dataset = dataset.ignore_errors().batch(64).prefetch(2)
    decoded = np.zeros(len(paths), bool)
    file_bytes = np.array([Path(p).stat().st_size for p in paths])
    progress = Progress(int(file_bytes.sum()), label)
    for batch_indices, images in dataset:
        rows = batch_indices.numpy()
        out[rows] = images.numpy()
        decoded[rows] = True
        progress.advance(int(file_bytes[rows].sum()))
    progress.finish()
    return tuple(int(i) for i in np.flatnonzero(~decoded))


def images_fingerprint(paths: Sequence[Path]) -> str:
    """sha256 over the contents of the images, in order: moved images still hit the cache."""
    outer = hashlib.sha256(_DECODE_VERSION.encode())
    for path in paths:
        outer.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return outer.hexdigest()


def cached_pixels(paths: Sequence[Path], size: int, cache_dir: str | Path | None = None) -> DecodedImages:
    """The decoded, resized images, from the cache when an identical call already made them."""
    key = hashlib.sha256(f"{images_fingerprint(paths)}|{size}".encode()).hexdigest()[:32]
    shape = (len(paths), size, size, 3)

    def make(out: np.ndarray) -> dict:
        return {"failed": list(decode_into(paths, size, out))}

    pixels, meta = _cached_array(cache_dir, f"pixels-{key}", shape, np.uint8, make)
    return DecodedImages(pixels, tuple(meta["failed"]), key)


def weights_fingerprint(layer) -> str:
    digest = hashlib.sha256()
    for weight in layer.weights:
        digest.update(np.ascontiguousarray(np.asarray(weight.numpy(), np.float32)).tobytes())
    return digest.hexdigest()


def cached_features(encoder, decoded: DecodedImages, mirrored: bool, batch_size: int = 32,
                    cache_dir: str | Path | None = None) -> np.ndarray:
    """A frozen backbone's feature maps (views, N, H', W', C) float16: view 0 of the images, view 1
    (when `mirrored`) of their mirror images. Cached under the pixels' key and the backbone's weights."""
    import tensorflow as tf

    views = 2 if mirrored else 1
    identity = (f"{decoded.key}|{views}|{encoder.backbone_name}|{encoder.image_size}|"
                f"{weights_fingerprint(encoder.backbone)}")
    key = hashlib.sha256(identity.encode()).hexdigest()[:32]
    shape = (views, len(decoded.pixels), *encoder.feature_shape)
    compute = tf.function(lambda x: encoder.backbone_features(x, training=False))

    def make(out: np.ndarray) -> dict:
        progress = Progress(views * decoded.pixels.nbytes, f"computing {encoder.backbone_name} features")
        for view in range(views):
            for first in range(0, len(decoded.pixels), batch_size):
                pixels = np.asarray(decoded.pixels[first:first + batch_size], np.float32)
                if view == 1:
                    pixels = pixels[:, :, ::-1]
                out[view, first:first + len(pixels)] = compute(tf.constant(pixels)).numpy().astype(np.float16)
                progress.advance(pixels.size)
        progress.finish()
        return {}

    return _cached_array(cache_dir, f"features-{key}", shape, np.float16, make)[0]


def _cached_array(cache_dir, name: str, shape: tuple, dtype, make) -> tuple[np.ndarray, dict]:
    """A memory-mapped array cache_dir/NAME.array (made by make(out) -> meta on a miss), and its meta.
    The array file appears only once complete; its space is reserved before the memory map is
    written, so a full disk is a one-line error rather than a SIGBUS. A damaged entry is rebuilt."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize

    def whole(meta: dict, data_path: Path) -> bool:
        return (tuple(meta["shape"]) == tuple(shape) and meta["dtype"] == np.dtype(dtype).name
                and data_path.stat().st_size == size)

    def build(temporary: Path) -> dict:
        with open(temporary, "wb") as handle:
            disk_cache.preallocate(handle, size, temporary.parent)
        out = np.memmap(temporary, dtype=dtype, mode="r+", shape=shape)
        meta = {**make(out), "shape": list(shape), "dtype": np.dtype(dtype).name}
        out.flush()
        del out
        return meta

    data_path, meta = disk_cache.cached_entry(cache_dir, name, ".array", build, whole)
    return np.memmap(data_path, dtype=dtype, mode="r", shape=shape), meta


@dataclass(frozen=True)
class CaptionExamples:
    """(image row, caption ids) pairs: which row of the image array each caption describes."""

    rows: np.ndarray              # (examples,) int64
    ids: tuple[np.ndarray, ...]   # caption token ids, without BOS/EOS

    def __len__(self) -> int:
        return len(self.rows)


def caption_examples(captions_per_image: Sequence[Sequence[list[int]]], image_rows: Sequence[int],
                     max_length: int) -> CaptionExamples:
    """One example per caption; captions are cut to max_length tokens."""
    rows, ids = [], []
    for row, captions in zip(image_rows, captions_per_image):
        for caption in captions:
            rows.append(row)
            ids.append(np.asarray(caption[:max_length], np.int32))
    return CaptionExamples(np.asarray(rows, np.int64), tuple(ids))


@dataclass(frozen=True)
class ImageSet:
    """Captioned images and their decoded pixels: image i of `images` is row rows[i] of `decoded`."""

    images: CaptionedImages
    decoded: DecodedImages
    rows: np.ndarray

    @property
    def pixels(self) -> np.ndarray:
        return self.decoded.pixels

    def part(self, indices: np.ndarray) -> "ImageSet":
        """The ImageSet of images `indices` of these."""
        return ImageSet(self.images.subset(indices), self.decoded, self.rows[indices])

    def examples(self, tokenizer, max_length: int) -> "CaptionExamples":
        """One example per caption, its ids cut to max_length tokens."""
        encoded = [tokenizer.encode_batch(list(captions)) for captions in self.images.captions]
        return caption_examples(encoded, self.rows, max_length)


def decoded_images(images: CaptionedImages, size: int, training: bool = False, skip_bad: bool = False) -> ImageSet:
    """Decode (or load from the cache) every image; an undecodable one is an error, or is skipped."""
    decoded = cached_pixels(images.paths, size)
    if decoded.failed and not skip_bad:
        first = decoded.failed[0]
        others = f" ({len(decoded.failed) - 1} more cannot be decoded either)" if len(decoded.failed) > 1 else ""
        raise UserError(f"cannot decode the image {images.paths[first]} as JPEG, PNG, GIF or BMP{others}",
                        images.where[first], "replace or remove the file" +
                        (", or pass --skip-bad-images to leave such images out" if training else ""))
    good = np.setdiff1d(np.arange(len(images)), decoded.failed)
    if not len(good):
        raise UserError("none of the images can be decoded", images.folder, "check the image files")
    return ImageSet(images.subset(good, skipped=len(decoded.failed)), decoded, good)


def training_steps(examples: CaptionExamples, batch_size: int, by_image: bool = False) -> int:
    """Full batches per pass (one smaller batch when there are fewer examples than a batch); with
    `by_image`, batch_size counts images (each brings all of its captions)."""
    units = len(np.unique(examples.rows)) if by_image else len(examples)
    return max(1, units // batch_size)


def batch_units(examples: CaptionExamples, by_image: bool) -> list[np.ndarray]:
    """What a batch is made of: single captions, or with `by_image` each image's captions (example indices)."""
    if not by_image:
        return [np.array([i]) for i in range(len(examples))]
    order = np.argsort(examples.rows, kind="stable")  # one sort, not a scan of every caption per image
    return np.split(order, np.flatnonzero(np.diff(examples.rows[order])) + 1)


def pass_batches(examples: CaptionExamples, batch_size: int, seed: int, pass_index: int,
                 by_image: bool = False) -> list[np.ndarray]:
    """The batches of one pass over the captions (arrays of example indices): full batches of units of
    similar length (batching.length_bucketed_batches within groups of a few batches), in an order set by
    (seed, pass_index). A unit is a caption, or with `by_image` an image with all its captions (its
    length: its longest caption's)."""
    units = batch_units(examples, by_image)
    lengths = np.array([max(len(examples.ids[i]) for i in unit) for unit in units])
    batches = length_bucketed_batches(lengths, min(batch_size, len(units)), shuffle=True, seed=seed, epoch=pass_index,
                                      window_batches=_LENGTH_GROUP_BATCHES, drop_remainder=True)
    return [np.concatenate([units[u] for u in batch]) for batch in batches]


def random_crops(pixels, smallest_area: float, seed):
    """tf op: each image of (batch, height, width, 3) float32 replaced by a random box of it resized
    back to (height, width) (bilinear), as Inception-style training crops do: the box covers a share
    of the image's area drawn uniformly from [smallest_area, 1], its aspect ratio log-uniform in
    [3/4, 4/3], its place uniform. A crop shows the same scene at another scale and position, which
    is what keeps a CNN trained from scratch on a few hundred photos from memorizing them."""
    import tensorflow as tf

    count = tf.shape(pixels)[0]
    u = tf.random.stateless_uniform((count, 4), seed=seed)
    area = smallest_area + (1.0 - smallest_area) * u[:, 0]
    aspect = tf.exp(np.log(3 / 4) + np.log(16 / 9) * u[:, 1])  # width / height
    height, width = tf.minimum(tf.sqrt(area / aspect), 1.0), tf.minimum(tf.sqrt(area * aspect), 1.0)
    top, left = (1.0 - height) * u[:, 2], (1.0 - width) * u[:, 3]
    boxes = tf.stack([top, left, top + height, left + width], axis=1)  # normalized (y1, x1, y2, x2)
    return tf.image.crop_and_resize(pixels, boxes, tf.range(count), tf.shape(pixels)[1:3])


def caption_batches(images: np.ndarray, examples: CaptionExamples, batch_size: int, *, bos_id: int, eos_id: int,
                    training: bool, flip: bool = False, seed: int = 0, first_batch: int = 0,
                    num_batches: int | None = None, by_image: bool = False, crop_area: float = 1.0):
    """tf.data of ((images, input ids), target ids) batches; with `by_image`,
    ((images, input ids, image of each caption), target ids): batch_size images, all their captions.

    `images`: pixels (N, size, size, 3) uint8 -> float32 in [0, 255]; or frozen-backbone features
    (views, N, H', W', C) float16 -> float32, where view 1 holds the mirrored images' features.
    Training: batches first_batch .. first_batch + num_batches - 1 of an endless stream of passes
    (`pass_batches`), so an epoch is a slice of the stream and a resumed run starts its slice at the
    next batch; with `flip`, each image is mirrored with probability ½, by (seed, batch); with
    `crop_area` < 1 (pixels only), each image is a random crop of at least that share of it.
    Evaluation: every caption once, in order (with `by_image`, batch_size images at a time).
    """
    import tensorflow as tf

    features = images.ndim == 5
    if training:
        def numbered():
            return stream_batches(lambda index: pass_batches(examples, batch_size, seed, index, by_image),
                                  training_steps(examples, batch_size, by_image),
                                  range(first_batch, first_batch + num_batches))
    else:
        units = batch_units(examples, by_image)
        evaluation = [np.concatenate(units[first:first + batch_size]) for first in range(0, len(units), batch_size)]
        num_batches = len(evaluation)

        def numbered():
            return enumerate(evaluation)

    def generate():
        for number, members in numbered():
            rows = examples.rows[members]
            if by_image:  # each image once; image_of[k] is caption k's position among them
                rows, image_of = np.unique(rows, return_inverse=True)
            else:
                image_of = np.arange(len(rows))
            if features:
                mirrored = training and flip and images.shape[0] == 2
                views = np.random.default_rng([seed, number]).integers(0, 2, len(rows)) if mirrored \
                    else np.zeros(len(rows), np.int64)
                x = images[views, rows]
            else:
                x = images[rows]
            captions = [examples.ids[i] for i in members]
            inputs = pad([np.insert(caption, 0, bos_id) for caption in captions])
            targets = pad([np.append(caption, eos_id) for caption in captions])
            yield np.asarray(x), inputs, targets, image_of.astype(np.int32), number

    x_shape = images.shape[2:] if features else images.shape[1:]
    x_dtype = tf.float16 if features else tf.uint8
    signature = (tf.TensorSpec((None, *x_shape), x_dtype), tf.TensorSpec((None, None), tf.int32),
                 tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None,), tf.int32),
                 tf.TensorSpec((), tf.int64))

    def to_model(x, inputs, targets, image_of, number):
        x = tf.cast(x, tf.float32)
        batch_seed = tf.stack([tf.constant(seed, tf.int64), number])
        if crop_area < 1 and training and not features:
            x = random_crops(x, crop_area, tf.random.experimental.stateless_fold_in(batch_seed, 1))
        if flip and training and not features:
            x = tf.image.stateless_random_flip_left_right(x, seed=batch_seed)
        return ((x, inputs, image_of) if by_image else (x, inputs)), targets

    return batch_dataset(generate, signature, num_batches, transform=to_model)
