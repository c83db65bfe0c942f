"""The debugging environment variables: SEQTASKS_RUN_EAGERLY and SEQTASKS_XLA (the README, tests/conftest.py)."""
import keras
import pytest

from seqtasks.decoding import GenerationConfig
from seqtasks.training import compile_model
from seqtasks.config import TrainConfig


@pytest.mark.parametrize("value, eager", [("1", True), ("0", False), ("", False)])
def test_run_eagerly_is_set_on_the_model_and_not_saved_with_it(monkeypatch, value, eager):
    monkeypatch.setenv("SEQTASKS_RUN_EAGERLY", value)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    compile_model(model, TrainConfig(), "mse")
    assert model.run_eagerly is eager
    assert not model.get_compile_config()["run_eagerly"]  # a resumed run does not stay eager


def test_xla_default_follows_seqtasks_xla_and_an_explicit_setting_wins(monkeypatch):
    monkeypatch.setenv("SEQTASKS_XLA", "1")
    assert GenerationConfig().uses_xla(beam=False, conditional=False)
    assert not GenerationConfig().uses_xla(beam=True, conditional=False)
    assert not GenerationConfig().uses_xla(beam=False, conditional=True)
    monkeypatch.delenv("SEQTASKS_XLA")
    assert GenerationConfig().uses_xla(beam=False, conditional=False)  # on by default for users
    monkeypatch.setenv("SEQTASKS_XLA", "0")
    assert not GenerationConfig().uses_xla(beam=False, conditional=False)
    assert GenerationConfig(xla=True).uses_xla(beam=False, conditional=False)
    assert GenerationConfig(xla=True).uses_xla(beam=True, conditional=True)
