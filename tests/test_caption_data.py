"""Captioning data: caption tables and COCO JSON, splits by image, decoding, bad images, batches."""
import gzip
import json

import numpy as np
import pytest

from seqtasks.batching import holdout_split
from seqtasks.data.make_shapes import make_shapes
from seqtasks.errors import UserError
from seqtasks.image_pipeline import cached_pixels, caption_batches, caption_examples
from seqtasks.readers.images import read_captions


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """12 synthetic 32x32 images, two captions each."""
    out = tmp_path_factory.mktemp("shapes")
    make_shapes(out, count=12, size=32, seed=3)
    return out


def test_the_generator_is_deterministic_and_writes_two_captions_per_image(shapes, tmp_path):
    again = make_shapes(tmp_path, count=12, size=32, seed=3)
    assert again.read_text() == (shapes / "captions.csv").read_text()
    assert (tmp_path / "images" / "shape_00005.png").read_bytes() == (shapes / "images" / "shape_00005.png").read_bytes()
    data = read_captions(str(shapes / "captions.csv"), str(shapes / "images"))
    assert len(data) == 12 and data.num_captions == 24
    first, second = data.captions[0]
    assert first.split()[:4] == second.split()[:4] and ("left of" in first or "above" in first)


def test_csv_tsv_gz_and_coco_json_read_the_same_examples(shapes, tmp_path):
    rows = [("shape_00000.png", 'a caption, with a comma'), ("shape_00001.png", "one"), ("shape_00000.png", "two")]
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("id,image,caption\n" + "".join(f'{i},{im},"{c}"\n' for i, (im, c) in enumerate(rows)))
    tsv_path = tmp_path / "c.tsv.gz"
    with gzip.open(tsv_path, "wt") as handle:
        handle.write("image\tcaption\n" + "".join(f"{im}\t{c}\n" for im, c in rows))
    coco_path = tmp_path / "c.json"
    coco_path.write_text(json.dumps({
        "images": [{"id": 7, "file_name": "shape_00000.png"}, {"id": 9, "file_name": "shape_00001.png"}],
        "annotations": [{"image_id": {"shape_00000.png": 7, "shape_00001.png": 9}[im], "caption": c}
                        for im, c in rows]}))
    for path in (csv_path, tsv_path, coco_path):
        data = read_captions(str(path), str(shapes / "images"))
        assert [p.name for p in data.paths] == ["shape_00000.png", "shape_00001.png"], path
        assert data.captions == (("a caption, with a comma", "two"), ("one",)), path


def test_splits_hold_out_whole_images(shapes):
    data = read_captions(str(shapes / "captions.csv"), str(shapes / "images"))
    rest, held = (data.subset(indices) for indices in holdout_split(len(data), 0.25, seed=0))
    assert len(held) == 3 and len(rest) == 9
    assert not set(rest.paths) & set(held.paths)
    assert held.num_captions == 6


def test_a_caption_naming_a_missing_image_names_the_line_or_is_skipped(shapes, tmp_path):
    table = tmp_path / "c.csv"
    table.write_text("image,caption\nshape_00000.png,fine\nnope.png,lost\n")
    with pytest.raises(UserError, match=r"'nope.png' is not in the image folder .*line 3.*--skip-bad-images"):
        read_captions(str(table), str(shapes / "images"))
    data = read_captions(str(table), str(shapes / "images"), skip_missing=True)
    assert len(data) == 1 and data.skipped == 1


@pytest.mark.parametrize("content, message", [
    ("picture,text\na.png,x\n", "no 'image' and 'caption' columns"),
    ("image,caption\nshape_00000.png,\n", "empty caption.*line 2"),
    ("image,caption\n", "holds no captions"),
])
def test_bad_tables_are_one_line_errors(shapes, tmp_path, content, message):
    table = tmp_path / "c.csv"
    table.write_text(content)
    with pytest.raises(UserError, match=message):
        read_captions(str(table), str(shapes / "images"))


def test_bad_coco_json_and_missing_paths_are_user_errors(shapes, tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text('{"images": [{"id": 1, "file_name": "shape_00000.png"}], "annotations": [{"image_id": 2, '
                   '"caption": "x"}]}')
    with pytest.raises(UserError, match=r"image id 2.*annotations\[0\]"):
        read_captions(str(bad), str(shapes / "images"))
    bad.write_text('{"images": [}')
    with pytest.raises(UserError, match="not valid JSON.*line 1"):
        read_captions(str(bad), str(shapes / "images"))
    with pytest.raises(UserError, match="no such caption file"):
        read_captions(str(tmp_path / "none.csv"), str(shapes / "images"))
    with pytest.raises(UserError, match="image folder .* does not exist"):
        read_captions(str(shapes / "captions.csv"), str(tmp_path / "nowhere"))


def test_decoding_reports_corrupt_images_and_caches_the_pixels(shapes, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    good = (shapes / "images" / "shape_00000.png").read_bytes()
    (images / "good.png").write_bytes(good)
    (images / "cut.png").write_bytes(good[:len(good) // 2])
    (images / "text.jpg").write_text("not an image at all")
    paths = [images / "good.png", images / "cut.png", images / "text.jpg"]
    decoded = cached_pixels(paths, 32, cache_dir=tmp_path / "cache")
    assert decoded.failed == (1, 2)
    assert decoded.pixels.shape == (3, 32, 32, 3) and decoded.pixels[0].std() > 0
    again = cached_pixels(paths, 32, cache_dir=tmp_path / "cache")
    assert again.key == decoded.key and again.failed == (1, 2)
    assert len(list((tmp_path / "cache").glob("pixels-*.array"))) == 1


def test_training_batches_are_teacher_forced_seeded_and_resumable(shapes):
    data = read_captions(str(shapes / "captions.csv"), str(shapes / "images"))
    pixels = cached_pixels(data.paths, 32).pixels
    examples = caption_examples([[[5, 6, 7], [8, 9]] for _ in data.captions], range(len(data)), max_length=2)
    def batches(first, count, flip=False):
        return [(x.numpy(), i.numpy(), t.numpy()) for (x, i), t in caption_batches(
            pixels, examples, 4, bos_id=2, eos_id=3, training=True, flip=flip, seed=1,
            first_batch=first, num_batches=count)]
    whole = batches(0, 8)
    assert len(whole) == 8 and whole[0][0].dtype == np.float32 and whole[0][0].shape == (4, 32, 32, 3)
    x, inputs, targets = whole[0]
    assert inputs[0, 0] == 2 and all(row[row > 0][-1] == 3 for row in targets)
    np.testing.assert_array_equal(inputs[:, 1:], np.where(targets[:, :-1] == 3, 0, targets[:, :-1]))
    assert targets.shape[1] == 3  # captions were cut to max_length=2, then EOS
    resumed = batches(5, 3)
    for a, b in zip(whole[5:], resumed):
        for left, right in zip(a, b):
            np.testing.assert_array_equal(left, right)
    flipped = batches(0, 8, flip=True)
    mirrored = sum(not np.array_equal(a[0], b[0]) for a, b in zip(whole, flipped))
    assert 0 < mirrored


def test_random_crops_show_part_of_each_image_at_full_size_and_repeat_with_the_seed(shapes):
    data = read_captions(str(shapes / "captions.csv"), str(shapes / "images"))
    pixels = cached_pixels(data.paths, 32).pixels
    examples = caption_examples([[[5, 6]] for _ in data.captions], range(len(data)), max_length=2)

    def first_batches(crop_area, seed=1):
        return [x.numpy() for (x, _), _ in caption_batches(pixels, examples, 4, bos_id=2, eos_id=3, training=True,
                                                           seed=seed, first_batch=0, num_batches=3,
                                                           crop_area=crop_area)]
    whole, cropped = first_batches(1.0), first_batches(0.3)
    for a, b in zip(whole, cropped):
        assert b.shape == a.shape == (4, 32, 32, 3)
        # every image changed, yet stays a picture of the same scene: the colours it is made of stay
        assert all(not np.allclose(left, right) for left, right in zip(a, b))
        assert np.abs(a.mean(axis=(1, 2)) - b.mean(axis=(1, 2))).mean() < 40
    for a, b in zip(cropped, first_batches(0.3)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(cropped[0], first_batches(0.3, seed=2)[0])
    evaluation = caption_batches(pixels, examples, 4, bos_id=2, eos_id=3, training=False, crop_area=0.3)
    (x, _), _ = next(iter(evaluation))
    np.testing.assert_array_equal(x.numpy(), pixels[examples.rows[:4]].astype(np.float32))


def test_batches_by_image_hold_whole_images_with_all_their_captions(shapes):
    data = read_captions(str(shapes / "captions.csv"), str(shapes / "images"))
    pixels = cached_pixels(data.paths, 32).pixels
    captions = [[[10 + i], [30 + i, 7]] for i in range(len(data))]  # a caption's first word names its image
    examples = caption_examples(captions, range(len(data)), max_length=4)
    one_pass = caption_batches(pixels, examples, 4, bos_id=2, eos_id=3, training=True, seed=1, first_batch=0,
                               num_batches=3, by_image=True)
    seen = []
    for (x, inputs, image_of), targets in one_pass:
        x, image_of, targets = x.numpy(), image_of.numpy(), targets.numpy()
        assert x.shape == (4, 32, 32, 3) and inputs.shape[0] == targets.shape[0] == 8
        for k, caption in enumerate(targets):
            image = caption[0] - (10 if caption[0] < 30 else 30)
            np.testing.assert_array_equal(x[image_of[k]], pixels[image])  # each caption beside its image
            seen.append((image, tuple(caption[caption > 0])))
    # one pass: every caption once, whole images per batch
    assert sorted(seen) == sorted((i, (*c, 3)) for i in range(len(data)) for c in captions[i])
    evaluation = list(caption_batches(pixels, examples, 5, bos_id=2, eos_id=3, training=False, by_image=True))
    assert [len(x) for (x, _, _), _ in evaluation] == [5, 5, 2]
    first_words = np.concatenate([t.numpy()[:, 0] for _, t in evaluation])
    np.testing.assert_array_equal(first_words, [w for i in range(len(data)) for w in (10 + i, 30 + i)])  # in order
