"""What a user meets around training: installed configs, reproducing a run, setting names, progress, curves."""
import dataclasses
import re
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqtasks.api import resolve_task_config
from seqtasks.cli import cli
from seqtasks.config import demo_settings, find_config, installed_configs, read_toml, resolve_config
from seqtasks.errors import UserError
from seqtasks.tasks import get_task, task_classes

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def unwrapped(text: str) -> str:
    """Help text as one line: click's wrapping (also after a hyphen) undone."""
    return " ".join(re.sub(r"-\n\s+", "-", text).split())


# ---- b: the recommended configs install with the package; a demo's recipe is a named config -------

def test_every_task_has_an_installed_demo_config_and_every_installed_config_is_valid_for_its_task():
    configs = installed_configs()
    assert {f"demo-{name}" for name in task_classes()} <= set(configs)
    assert {"lm-tinyshakespeare-lstm", "translate-multi30k-transformer", "tag-ud-ewt-bilstm-char"} <= set(configs)
    for name, path in configs.items():
        task = name.removeprefix("demo-").split("-")[0]
        assert path.parent == ROOT / "seqtasks" / "configs"
        resolve_config(get_task(task).Config, read_toml(path), where=str(path))  # no unknown or bad setting


def test_the_configs_are_package_data():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    assert "seqtasks.configs" in setuptools["packages"]
    assert "*.toml" in setuptools["package-data"]["seqtasks.configs"]
    assert not (ROOT / "benchmarks" / "configs").exists()  # one place for them


@pytest.mark.parametrize("task", sorted(task_classes()))
def test_the_no_data_demo_runs_its_named_config(task):
    task_obj = get_task(task)
    demo = demo_settings(task)
    assert demo and demo.items() <= task_obj.default_overrides().items()
    no_data = resolve_task_config(task_obj, None, {})
    assert {key: getattr(no_data, key) for key in demo} == demo


def test_config_takes_an_installed_config_by_name(tmp_path):
    task = get_task("lm")
    cfg = resolve_task_config(task, "lm-tinyshakespeare-lstm", {"data": str(tmp_path / "text.txt"), "lr": 1e-3})
    assert (cfg.units, cfg.steps_per_epoch, cfg.lr) == (384, 300, 1e-3)  # the file's values, flags on top
    assert find_config("demo-lm.toml") == installed_configs()["demo-lm"]
    local = tmp_path / "demo-lm"  # a file of that name is the file, not the installed config
    local.write_text("units = 12\n")
    assert find_config(local) == local
    with pytest.raises(UserError, match="demo-lm"):  # the error lists what is installed
        find_config("no-such-config")


def test_tasks_lists_the_configs_and_the_demo_recipe():
    listing = run_cli("tasks")
    assert listing.exit_code == 0, listing.output
    assert "--config demo-lm: max_time=3.0, epochs=30, steps_per_epoch=100" in listing.output
    assert "configs: lm-tinyshakespeare-lstm, lm-tinyshakespeare-transformer" in listing.output
    assert "--config demo-caption:" in listing.output and "attention=True" in listing.output


def test_train_help_shows_the_demo_values_beside_the_defaults():
    shown = unwrapped(run_cli("train", "lm", "--help").output)
    assert "--config demo-lm" in shown
    assert "[default: 0.002; demo: 0.004]" in shown and "[default: 0; demo: 100]" in shown
    assert "[default: 256]" in shown  # units: the demo keeps the default, so no demo value is shown
    generate = unwrapped(run_cli("train", "generate", "--help").output)
    assert "model family [default: 'lstm'; demo: 'transformer']" in generate
    caption = unwrapped(run_cli("train", "caption", "--help").output)
    assert "[default: off; demo: on]" in caption  # --attention


def test_an_unknown_config_name_is_one_line():
    result = CliRunner().invoke(cli, ["train", "lm", "--config", "no-such-config"])
    assert result.exit_code == 1
    assert result.output.startswith("seqtasks: error: config file not found (no-such-config)")
    assert len(result.output.strip().splitlines()) == 1


# ---- c: --config RUN/config.json trains the same run again ------------------------------------------

def test_a_runs_config_json_is_a_settings_source(tiny_runs):
    run, data = tiny_runs("lm")
    cfg = resolve_task_config(get_task("lm"), str(run.path / "config.json"), {"seed": 3})
    assert dataclasses.replace(cfg, seed=run.settings.seed) == run.settings
    assert (cfg.seed, cfg.units, cfg.data) == (3, 8, str(Path(data["data"]).resolve()))  # flags win; absolute data


def test_train_with_a_runs_config_json_repeats_the_run(tiny_runs, tmp_path, monkeypatch):
    run, _ = tiny_runs("lm")
    monkeypatch.chdir(tmp_path)  # the recorded data paths are absolute: any folder will do
    result = run_cli("train", "lm", "--config", run.path / "config.json", "--out", "again", "--quiet")
    assert result.exit_code == 0, result.output
    again = (tmp_path / "again" / "config.json").read_text()
    assert '"units": 8' in again and '"seq_len": 8' in again
    old_history = run.directory.read_history()
    new_history = type(run)(tmp_path / "again").directory.read_history()
    assert [row["step"] for row in new_history] == [row["step"] for row in old_history]
    assert [row["loss"] for row in new_history] == pytest.approx([row["loss"] for row in old_history], rel=1e-4)


def test_a_config_json_of_another_task_or_not_of_a_run_is_one_line(tiny_runs, tmp_path):
    run, _ = tiny_runs("lm")
    result = CliRunner().invoke(cli, ["train", "classify", "--config", str(run.path / "config.json")])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "of a run of the lm task, not classify" in result.output
    stray = tmp_path / "settings.json"
    stray.write_text('{"units": 8}')
    result = CliRunner().invoke(cli, ["train", "lm", "--config", str(stray)])
    assert result.exit_code == 1 and "not a run's config.json" in result.output
