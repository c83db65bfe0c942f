"""The captioning task end to end: it learns the synthetic shapes, and the CLI works as a user meets it."""
import json

import pytest
from click.testing import CliRunner

import seqtasks
from seqtasks.cli import cli
from seqtasks.config import resolve_config
from seqtasks.data.make_shapes import make_shapes
from seqtasks.errors import UserError
from seqtasks.tasks.caption import CaptionConfig, CaptioningTask

# the settings that learn the 32x32 shapes in 3 epochs on a CPU (see data/README.md; exact match 0.98 and
# 1.0 on the 200 held-out images with seeds 0 and 7, 18-21 s of CPU; 2 epochs: 0.27)
LEARN = dict(image_size=32, cnn_blocks=3, cnn_filters=8, units=64, attention=True, flip=False, batch_size=16,
             lr=5e-3, warmup_steps=30, dropout=0.0, precision="fp32", sample_examples=0)
TINY = ["--image-size", "32", "--cnn-blocks", "2", "--cnn-filters", "4", "--units", "16", "--batch-size", "8",
        "--epochs", "1", "--steps-per-epoch", "2", "--precision", "fp32", "--sample-examples", "1", "--no-flip"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Held-out images come from another seed: the model never saw them or their captions' combinations."""
    root = tmp_path_factory.mktemp("shapes")
    make_shapes(root / "train", count=1500, size=32, seed=1)
    make_shapes(root / "test", count=200, size=32, seed=2)
    return root


@pytest.fixture(scope="module")
def learned(shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "shapes"
    return seqtasks.train("caption", images=str(shapes / "train" / "images"),
                          captions=str(shapes / "train" / "captions.csv"), epochs=3, out=str(out), verbose=0, **LEARN)


@pytest.mark.graph_mode  # traced training, as users train
def test_the_synthetic_shapes_are_learned_to_high_exact_match_on_held_out_images(learned, shapes):
    metrics = learned.evaluate(images=str(shapes / "test" / "images"), captions=str(shapes / "test" / "captions.csv"))
    assert metrics["exact_match"] >= 0.9, metrics
    assert metrics["bleu4"] >= 90 and metrics["images"] == 200
    beam = learned.evaluate(images=str(shapes / "test" / "images"), captions=str(shapes / "test" / "captions.csv"),
                            beam=3)
    assert beam["exact_match"] >= 0.9 and beam["beam"] == 3


def test_evaluate_and_predict_through_the_cli(learned, shapes, tmp_path):
    result = invoke("evaluate", learned.path, "--images", shapes / "test" / "images", "--captions",
                    shapes / "test" / "captions.csv", "--json")
    assert result.exit_code == 0, result.output
    assert {"bleu1", "bleu2", "bleu3", "bleu4", "exact_match", "images"} <= set(json.loads(result.output))
    images = [shapes / "test" / "images" / f"shape_0000{i}.png" for i in range(3)]
    references = (shapes / "test" / "captions.csv").read_text().splitlines()
    result = invoke("predict", learned.path, *images)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 3 and sum(f"shape_0000{i}.png,{line}" in references for i, line in enumerate(lines)) >= 2
    result = invoke("predict", learned.path, images[0], "--beam", "3", "--n-best", "2", "--json")
    output = json.loads(result.output)["output"]
    assert len(output) == 2 and output[0]["score"] >= output[1]["score"]
    result = invoke("predict", learned.path, images[0], "--n-best", "2", "--json")  # the beam widens to 2
    assert len(json.loads(result.output)["output"]) == 2
    result = invoke("evaluate", learned.path, "--images", shapes / "test" / "images", "--captions",
                    shapes / "test" / "captions.csv", "--beam", "2", "--length-penalty", "0.5", "--json")
    scores = json.loads(result.output)
    assert scores["beam"] == 2 and scores["length_penalty"] == 0.5 and scores["words_per_caption"] > 3
    sampled = [invoke("predict", learned.path, images[0], "--temperature", "1.5", "--seed", "4").output
               for _ in range(2)]
    assert sampled[0] == sampled[1]


def test_plot_draws_the_attention_of_each_word(learned, shapes, tmp_path):
    image = shapes / "test" / "images" / "shape_00000.png"
    target = tmp_path / "attention.png"
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError:
        result = invoke("predict", learned.path, image, "--plot", target)
        assert result.exit_code == 1 and "matplotlib" in result.output
        return
    result = invoke("predict", learned.path, image, "--plot", target)
    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    captioner = learned.task.captioner(learned)
    from seqtasks.image_pipeline import cached_pixels

    pixels = cached_pixels([image], 32).pixels
    caption = captioner.attend(pixels[0], captioner.caption(pixels)[0][0])
    assert caption.weights.shape == (len(caption.ids) + 1, 16)


def test_train_finetune_and_bad_images_through_the_cli(shapes, tmp_path, capsys):
    train = ["--images", shapes / "test" / "images", "--captions", shapes / "test" / "captions.csv"]
    out = tmp_path / "tiny"
    result = invoke("train", "caption", *train, "--arch", "transformer", "--heads", "2", "--layers", "1",
                    "--batch-by-image", "--crop-area", "0.5", "--word-dropout", "0.2", "--label-smoothing", "0.1",
                    "--out", out, *TINY)
    assert result.exit_code == 0, result.output
    assert "sample after epoch 1" in result.output and "training finished" in result.output
    record = json.loads((out / "config.json").read_text())
    assert record["settings"]["batch_by_image"] is True and record["settings"]["crop_area"] == 0.5
    assert record["settings"]["word_dropout"] == 0.2 and seqtasks.load(out).model.word_dropout == 0.2
    assert record["data"]["train"]["images"] == 180 and record["data"]["valid"]["images"] == 20
    result = invoke("finetune", out, *train, "--out", tmp_path / "tuned", "--epochs", "1", "--steps-per-epoch", "1",
                    "--freeze", "embeddings", "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "tuned" / "config.json").read_text())["parent"]["freeze"] == "embeddings"
    result = invoke("train", "caption", *train, "--batch-by-image", "--strategy", "mirrored", "--out",
                    tmp_path / "split", *TINY)
    assert result.exit_code == 1 and "cannot be split across replicas" in result.output
    assert not (tmp_path / "split").exists()
    result = invoke("train", "caption", *train, "--crop-area", "1.5", "--out", tmp_path / "crop", *TINY)
    assert result.exit_code == 1 and "--crop-area 1.5 is out of range (from the command line): give a number > 0 and <= 1" in result.output
    with pytest.raises(UserError, match="cannot freeze a backbone the parent trained"):
        seqtasks.finetune(out, None, tmp_path / "frozen", images=str(train[1]), captions=str(train[3]),
                          freeze_backbone=True, verbose=0)
    with pytest.raises(UserError, match="cannot change image_size"):
        seqtasks.finetune(out, None, tmp_path / "bigger", images=str(train[1]), captions=str(train[3]),
                          image_size=64, verbose=0)

    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("shape_00000.png", "shape_00001.png", "shape_00002.png"):
        (broken / name).write_bytes((shapes / "test" / "images" / name).read_bytes())
    (broken / "shape_00001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    table = tmp_path / "broken.csv"
    table.write_text("image,caption\nshape_00000.png,a b\nshape_00001.png,c d\nshape_00002.png,e f\nshape_00003.png,g\n")
    result = invoke("train", "caption", "--images", broken, "--captions", table, "--out", tmp_path / "bad", *TINY)
    assert result.exit_code == 1
    assert result.output.startswith("seqtasks: error: the image 'shape_00003.png' is not in the image folder")
    assert "line 5" in result.output and "Traceback" not in result.output
    task = CaptioningTask()
    cfg = resolve_config(CaptionConfig, {}, dict(images=str(broken), captions=str(table), skip_bad_images=True,
                                                 valid_fraction=0.5, image_size=32))
    data = task.read(cfg)
    assert "left out 2 missing or unreadable training image(s)" in capsys.readouterr().out
    assert len(data.train.images) == len(data.valid.images) == 1
    table.write_text("image,caption\nshape_00000.png,a b\nshape_00001.png,c d\n")
    result = invoke("train", "caption", "--images", broken, "--captions", table, "--out", tmp_path / "bad2", *TINY)
    assert result.exit_code == 1 and "cannot decode the image" in result.output and "line 3" in result.output
    assert not (tmp_path / "bad2").exists()
    result = invoke("predict", out, broken / "shape_00001.png")
    assert result.exit_code == 1 and "cannot decode the image" in result.output


def test_a_frozen_keras_applications_backbone_trains_from_cached_features(shapes, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SEQTASKS_CACHE", str(cache))
    settings = dict(images=str(shapes / "test" / "images"), captions=str(shapes / "test" / "captions.csv"),
                    backbone="mobilenetv2", weights="none", freeze_backbone=True, image_size=32, units=16,
                    batch_size=8, epochs=1, steps_per_epoch=2, precision="fp32", sample_examples=0,
                    attention=True, initial_state="mean", word_dropout=0.3, label_smoothing=0.1, cell_dropout=0.2)
    run = seqtasks.train("caption", out=str(tmp_path / "frozen"), verbose=0, **settings)
    loss, _ = run.task.loss_and_metrics(run.settings, run.preprocessor)
    assert loss.smoothing == 0.1 and run.model.word_dropout == 0.3 and run.model.encoder.cell_dropout_rate == 0.2
    features = sorted(cache.glob("**/features-*.array"))
    assert len(features) == 1  # every image of the table, and its mirror image (validation reads view 0)
    assert not any("backbone" in w.path or "conv" in w.path.lower() for w in run.model.trainable_weights)
    # a use marks the entry's mtime (for eviction); a rebuild would write a new file (a new inode)
    stamps = [(f.stat().st_ino, f.stat().st_size) for f in features]
    task, cfg = run.task, run.settings
    task.plan(cfg, run.preprocessor, task.read(cfg))  # the same backbone weights: the cache is reused
    assert sorted(cache.glob("**/features-*.array")) == features
    assert [(f.stat().st_ino, f.stat().st_size) for f in features] == stamps
    # the saved model captions pixels: its frozen backbone runs inside it
    assert isinstance(next(run.predict([str(shapes / "test" / "images" / "shape_00000.png")])), str)
