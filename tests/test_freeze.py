"""`seqtasks finetune --freeze` on every task's model: the frozen parts keep their weights bit for bit
while the rest trains, and a part the model does not have is one line, before any folder is made."""
import keras
import numpy as np
import pytest
from click.testing import CliRunner

import seqtasks
from seqtasks.cli import cli
from seqtasks.errors import UserError
from seqtasks.models.captioner import TransformerCaptioner
from seqtasks.models.image_encoder import ImageEncoder
from seqtasks.models.seq2seq import RecurrentSeq2Seq

# a real part of each task's tiny model (tests/conftest.py), the task's own parts among them
FREEZES = {"lm": "embeddings,layers:1", "generate": "layers:1", "classify": "embeddings", "tag": "crf,char_features",
           "translate": "encoder", "caption": "backbone"}
DEPTH = {"lm": 2, "generate": 2}  # layers of each tiny model (tests/conftest.py); the others have one
FEW_STEPS = dict(epochs=1, steps_per_epoch=2, warmup_steps=1, lr=1e-2)


def values(model: keras.Model, layers=None) -> dict[str, np.ndarray]:
    weights = model.weights if layers is None else [w for layer in layers for w in layer.weights]
    return {w.path: keras.ops.convert_to_numpy(w) for w in weights}


def frozen_values(model: keras.Model, freeze: str) -> dict[str, np.ndarray]:
    parts = model.freezable_parts()
    return values(model, [layer for name in freeze.split(",") for layer in parts[name]])


def finetune(run, data, out, **options):
    extra = {k: v for k, v in data.items() if k != "data"}  # caption: images and captions
    return seqtasks.finetune(run.path, data=data.get("data"), out=out, verbose=0, **extra, **options)


@pytest.mark.parametrize("task", sorted(FREEZES))
def test_frozen_parts_keep_their_weights_while_the_rest_trains(task, tiny_runs, tmp_path):
    parent, data = tiny_runs(task)
    freeze = FREEZES[task]
    child = finetune(parent, data, tmp_path / "tuned", freeze=freeze, **FEW_STEPS)
    frozen_before, frozen_after = frozen_values(parent.model, freeze), frozen_values(child.model, freeze)
    assert frozen_before and frozen_before.keys() == frozen_after.keys()
    for path, before in frozen_before.items():
        assert np.array_equal(before, frozen_after[path]), f"{path} changed although --freeze {freeze}"
    before, after = values(parent.model), values(child.model)
    changed = [path for path in before if path not in frozen_before and not np.array_equal(before[path], after[path])]
    assert changed, "nothing trained"
    assert child.record["parent"]["freeze"] == freeze


@pytest.mark.parametrize("task", sorted(FREEZES))
def test_a_part_the_model_lacks_is_one_line_listing_its_parts_and_makes_no_folder(task, tiny_runs, tmp_path):
    parent, data = tiny_runs(task)
    args = [arg for key, value in data.items() for arg in (f"--{key}", value)]
    depth = DEPTH.get(task, 1)
    layers = "layers:N (N from 1 to 2)" if depth == 2 else "layers:1"
    listed = f"embeddings, char_features, {layers}" if task == "tag" else f"embeddings, {layers}"
    for freeze, expected in (("embedding", f"its parts are: {listed}"),
                             ("layers:9", f"cannot freeze 9 layers: this model has {depth}")):
        result = CliRunner().invoke(cli, ["finetune", str(parent.path), *args, "--out", str(tmp_path / "tuned"),
                                          "--freeze", freeze, "--epochs", "1"])
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("seqtasks: error: ") and expected in lines[0], result.stderr
        assert layers in lines[0]
        assert not (tmp_path / "tuned").exists()


def test_the_translate_parts_are_listed_when_a_name_is_wrong(tiny_runs, tmp_path):
    parent, data = tiny_runs("translate")
    with pytest.raises(UserError, match=r"its parts are: embeddings, layers:1, encoder, decoder$"):
        finetune(parent, data, tmp_path / "tuned", freeze="embeddings,backbone")
    assert not (tmp_path / "tuned").exists()


def test_finetune_help_gives_the_general_form():
    result = CliRunner().invoke(cli, ["finetune", "--help"])
    assert "layers:N" in result.output and "encoder, decoder, backbone" in result.output


@pytest.mark.parametrize("make, expected", [
    (lambda: RecurrentSeq2Seq(12, 12, units=8, num_layers=2, attention="luong", shared_embeddings=True),
     ["embeddings", "layers:1", "layers:2", "encoder", "decoder"]),
    (lambda: TransformerCaptioner(12, ImageEncoder("cnn", 16, 8, cnn_filters=4, cnn_blocks=2), d_model=8, heads=2,
                                  num_layers=1),
     ["embeddings", "layers:1", "backbone", "encoder", "decoder"]),
])
def test_models_outside_the_tiny_runs_name_their_parts_and_each_part_holds_weights(make, expected):
    model = make()
    model.build(((None, None), (None, None)))
    parts = model.freezable_parts()
    assert list(parts) == expected
    for name, layers in parts.items():
        assert all(layer.weights for layer in layers if layer is not getattr(model, "position", None)), name
    # a bidirectional recurrent layer is both its directions; an encoder-decoder layer is both sides'
    if isinstance(model, RecurrentSeq2Seq):
        assert [layer.name for layer in parts["layers:1"]] == ["forward_0", "backward_0", "forward_0"]


def test_resuming_a_frozen_finetune_keeps_the_parts_frozen_and_the_optimizer_state(tiny_runs, tmp_path, recwarn):
    parent, data = tiny_runs("lm")
    child = finetune(parent, data, tmp_path / "tuned", freeze="embeddings", **FEW_STEPS)
    first = values(child.model)
    seqtasks.resume(child.path, epochs=2, verbose=0)
    resumed = seqtasks.load(child.path)
    assert resumed.info()["training"]["global_step"] == 4
    frozen = frozen_values(parent.model, "embeddings")
    assert all(np.array_equal(value, frozen_values(resumed.model, "embeddings")[path]) for path, value in frozen.items())
    assert any(not np.array_equal(value, values(resumed.model)[path]) for path, value in first.items())
    assert not [w for w in recwarn if "Skipping variable loading for optimizer" in str(w.message)]
