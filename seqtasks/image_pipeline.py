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
                batch; in training, shuffled by (seed, epoch), grouped by length, mirrored left-right
                at random (tf.image.stateless_random_flip_left_right, or the mirrored features), and
                with `crop_area` < 1 cut to a random box and resized back (`random_crops`).
                With `by_image`, a batch holds whole images, each with all of its captions, so a
                trainable CNN runs once per image rather than once per caption.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from seqtasks import disk_cache
from seqtasks.disk_cache import default_cache_dir
from seqtasks.pipeline import Progress

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
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    data_path, meta_path = cache_dir / f"{name}.array", cache_dir / f"{name}.json"
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize

    def whole(meta: dict) -> bool:
        return (tuple(meta["shape"]) == tuple(shape) and meta["dtype"] == np.dtype(dtype).name
                and data_path.stat().st_size == size)

    meta = disk_cache.read_meta(meta_path, whole)
    if meta is not None:
        disk_cache.mark_used(data_path, meta_path)
        disk_cache.tidy(cache_dir, keep=name)
        return np.memmap(data_path, dtype=dtype, mode="r", shape=shape), meta
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise disk_cache.write_error(cache_dir, error) from None
    disk_cache.tidy(cache_dir, keep=name)
    temporary = disk_cache.temporary_path(data_path)
    try:
        with open(temporary, "wb") as handle:
            disk_cache.preallocate(handle, size, cache_dir)
        out = np.memmap(temporary, dtype=dtype, mode="r+", shape=shape)
        meta = {**make(out), "shape": list(shape), "dtype": np.dtype(dtype).name}
        out.flush()
        del out
        os.replace(temporary, data_path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise disk_cache.write_error(cache_dir, error) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    disk_cache.write_meta(meta_path, meta)
    disk_cache.tidy(cache_dir, keep=name)  # now counting the new entry
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


def training_steps(examples: CaptionExamples, batch_size: int, by_image: bool = False) -> int:
    """Full batches per pass (one smaller batch when there are fewer examples than a batch); with
    `by_image`, batch_size counts images (each brings all of its captions)."""
    units = len(np.unique(examples.rows)) if by_image else len(examples)
    return max(1, units // batch_size)


def _units(examples: CaptionExamples, by_image: bool) -> list[np.ndarray]:
    """What a batch is made of: single captions, or with `by_image` each image's captions (example indices)."""
    if not by_image:
        return [np.array([i]) for i in range(len(examples))]
    order = np.argsort(examples.rows, kind="stable")  # one sort, not a scan of every caption per image
    return np.split(order, np.flatnonzero(np.diff(examples.rows[order])) + 1)


def _pass_batches(examples: CaptionExamples, batch_size: int, seed: int, pass_index: int,
                  by_image: bool = False) -> list[np.ndarray]:
    """The batches of one pass over the captions (arrays of example indices): a shuffle set by
    (seed, pass_index), units of similar length grouped into the same batch (less padding), the
    batches in random order. A unit is a caption, or with `by_image` an image with all its captions
    (its length: its longest caption's)."""
    units = _units(examples, by_image)
    rng = np.random.default_rng([seed, pass_index])
    steps, size = training_steps(examples, batch_size, by_image), min(batch_size, len(units))
    order = rng.permutation(len(units))[:steps * size]
    lengths = np.array([max(len(examples.ids[i]) for i in units[u]) for u in order])
    group = size * _LENGTH_GROUP_BATCHES
    for first in range(0, len(order), group):
        chunk = slice(first, first + group)
        order[chunk] = order[chunk][np.argsort(lengths[chunk], kind="stable")]
    return [np.concatenate([units[u] for u in order[b * size:(b + 1) * size]]) for b in rng.permutation(steps)]


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
    (`_pass_batches`), so an epoch is a slice of the stream and a resumed run starts its slice at the
    next batch; with `flip`, each image is mirrored with probability ½, by (seed, batch); with
    `crop_area` < 1 (pixels only), each image is a random crop of at least that share of it.
    Evaluation: every caption once, in order (with `by_image`, batch_size images at a time).
    """
    import tensorflow as tf

    features = images.ndim == 5
    per_pass = training_steps(examples, batch_size, by_image)
    if not training:
        units = _units(examples, by_image)
        evaluation = [np.concatenate(units[first:first + batch_size]) for first in range(0, len(units), batch_size)]
        first_batch, num_batches = 0, len(evaluation)

    current_pass: dict[int, list[np.ndarray]] = {}  # the pass being read: its index -> its batches

    def members_of(number: int) -> np.ndarray:
        if not training:
            return evaluation[number]
        pass_index = number // per_pass
        if pass_index not in current_pass:
            current_pass.clear()
            current_pass[pass_index] = _pass_batches(examples, batch_size, seed, pass_index, by_image)
        return current_pass[pass_index][number % per_pass]

    def generate():
        for number in range(first_batch, first_batch + num_batches):
            members = members_of(number)
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
            ids = [examples.ids[i] for i in members]
            width = max(len(i) for i in ids) + 1
            inputs = np.zeros((len(ids), width), np.int32)
            targets = np.zeros((len(ids), width), np.int32)
            for j, caption in enumerate(ids):
                inputs[j, :len(caption) + 1] = [bos_id, *caption]
                targets[j, :len(caption) + 1] = [*caption, eos_id]
            yield np.asarray(x), inputs, targets, image_of.astype(np.int32), number

    x_shape = images.shape[2:] if features else images.shape[1:]
    x_dtype = tf.float16 if features else tf.uint8
    signature = (tf.TensorSpec((None, *x_shape), x_dtype), tf.TensorSpec((None, None), tf.int32),
                 tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None,), tf.int32),
                 tf.TensorSpec((), tf.int64))
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)

    def to_model(x, inputs, targets, image_of, number):
        x = tf.cast(x, tf.float32)
        batch_seed = tf.stack([tf.constant(seed, tf.int64), number])
        if crop_area < 1 and training and not features:
            x = random_crops(x, crop_area, tf.random.experimental.stateless_fold_in(batch_seed, 1))
        if flip and training and not features:
            x = tf.image.stateless_random_flip_left_right(x, seed=batch_seed)
        return ((x, inputs, image_of) if by_image else (x, inputs)), targets

    dataset = dataset.map(to_model, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.apply(tf.data.experimental.assert_cardinality(num_batches)).prefetch(tf.data.AUTOTUNE)
