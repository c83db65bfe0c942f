"""What a user meets around training: installed configs, reproducing a run, setting names, progress, curves."""
import dataclasses
import io
import json
import math
import re
import shutil
import tomllib
import types
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqtasks.api import resolve_task_config
from seqtasks import plotting, progress
from seqtasks.cli import cli
from seqtasks.config import demo_settings, find_config, installed_configs, read_toml, renamed_settings, resolve_config
from seqtasks.errors import SeqtasksWarning, UserError
from seqtasks.plotting import curve_panels
from seqtasks.progress import ProgressBar, format_duration, progress_bar
from seqtasks.tasks import TASKS, get_task
from seqtasks.training import run_progress, time_left, write_curves

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def unwrapped(text: str) -> str:
    """Help text as one line: click's wrapping (also after a hyphen) undone."""
    return " ".join(re.sub(r"-\n\s+", "-", text).split())


# ---- b: the recommended configs install with the package; a demo's recipe is a named config -------

def test_every_task_has_an_installed_demo_config_and_every_installed_config_is_valid_for_its_task():
    configs = installed_configs()
    assert {f"demo-{name}" for name in TASKS} <= set(configs)
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


@pytest.mark.parametrize("task", sorted(TASKS))
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


# ---- d: one name per concept; the old names are deprecated aliases for one release ----------------

RENAMED = {("caption", "max_length"): "max_len", ("caption", "sample_images"): "sample_examples",
           ("translate", "max_source_length"): "max_source_len", ("translate", "max_target_length"): "max_target_len",
           ("translate", "sample_sentences"): "sample_examples"}


def test_a_length_limit_has_one_name_across_tasks():
    names = {f.name for cls in TASKS.values() for f in dataclasses.fields(cls.Config)}
    limits = {name for name in names if "len" in name and name != "length_penalty"}
    assert limits == {"max_len", "max_source_len", "max_target_len", "seq_len"}
    assert {name for name in names if name.startswith("sample_")} == {"sample_examples", "sample_tokens"}
    assert {(task, old): new for task, cls in TASKS.items()
            for old, new in renamed_settings(cls.Config).items()} == RENAMED


@pytest.mark.parametrize("task, old", sorted(RENAMED))
def test_an_old_flag_or_toml_key_still_works_with_a_one_line_warning(task, old, tmp_path):
    new = RENAMED[task, old]
    task_obj = get_task(task)
    data = {name: str(tmp_path / "missing") for name in task_obj.data_settings}
    with pytest.warns(SeqtasksWarning, match=f"--{old.replace('_', '-')} is deprecated: it is now "
                                             f"--{new.replace('_', '-')} \\(from the command line\\)"):
        assert getattr(resolve_task_config(task_obj, None, {**data, old: 7}), new) == 7
    config = tmp_path / "old.toml"
    config.write_text(f"{old} = 9\n")
    with pytest.warns(SeqtasksWarning, match=f"{old} is deprecated: it is now {new} \\(from {re.escape(str(config))}\\)"):
        assert getattr(resolve_task_config(task_obj, str(config), data), new) == 9
    with pytest.raises(UserError, match="both given"):
        resolve_task_config(task_obj, None, {**data, old: 7, new: 8})
    # the command line: the warning is one line on stderr, then the run goes on (here: to the missing data)
    flag = "--" + task_obj.data_settings[0].replace("_", "-")
    result = CliRunner().invoke(cli, ["train", task, flag, str(tmp_path / "missing"), f"--{old.replace('_', '-')}",
                                      "7", "--out", str(tmp_path / "run")])
    warning, error = result.stderr.strip().splitlines()
    assert warning == (f"seqtasks: warning: --{old.replace('_', '-')} is deprecated: it is now "
                       f"--{new.replace('_', '-')} (from the command line): use --{new.replace('_', '-')}; "
                       "the old name goes in the next release")
    assert error.startswith("seqtasks: error: ") and result.exit_code == 1


def test_a_run_saved_with_the_old_names_loads_with_its_values(tiny_runs, tmp_path):
    run, _ = tiny_runs("translate")
    old_run = tmp_path / "old-run"
    shutil.copytree(run.path, old_run)
    record = json.loads((old_run / "config.json").read_text())
    settings = record["settings"]
    settings["max_source_length"], settings["sample_sentences"] = 7, 1
    del settings["max_source_len"], settings["sample_examples"]
    (old_run / "config.json").write_text(json.dumps(record))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the run folder is no user mistake: no warning on loading
        loaded = type(run)(old_run)
    assert (loaded.settings.max_source_len, loaded.settings.sample_examples) == (7, 1)
    assert loaded.record["settings"]["max_source_len"] == 7
    assert loaded.predict(["a f"]) is not None


# ---- e: training curves drawn to RUN/curves.png (with the plot extra) -------------------------------

def test_a_finished_run_has_its_training_curves(tiny_runs):
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    run, _ = tiny_runs("classify")
    curves = run.path / "curves.png"
    assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = imread(curves).shape
    assert width > 2 * height  # three panels side by side: loss, validation accuracy, learning rate


def test_the_curve_panels_hold_the_loss_the_watched_metric_first_and_the_learning_rate():
    history = [{"epoch": 1, "lr": 1e-3, "loss": 2.0, "val_loss": 2.1, "val_accuracy": 0.5, "val_f1": 0.4},
               {"epoch": 2, "lr": 5e-4, "val_loss": 1.9, "val_accuracy": 0.6, "val_f1": 0.5}]  # a closed epoch: no loss
    assert curve_panels(history, "val_f1") == {"loss": ["loss", "val_loss"], "validation": ["val_f1", "val_accuracy"],
                                               "learning rate": ["lr"]}
    assert curve_panels([{"epoch": 1, "lr": 1e-3, "loss": 2.0}], "val_loss") == {"loss": ["loss"],
                                                                                  "learning rate": ["lr"]}


def test_without_matplotlib_training_ends_with_one_hint_line_at_most(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(plotting, "have_matplotlib", lambda: False)
    run = types.SimpleNamespace(path=tmp_path)
    history = [{"epoch": 1, "lr": 1e-3, "loss": 2.0}]
    assert write_curves(run, history, "val_loss", verbose=0) is None
    assert capsys.readouterr() == ("", "")
    assert write_curves(run, history, "val_loss", verbose=1) is None
    shown = capsys.readouterr()
    assert shown.err == "" and shown.out.splitlines() == [
        f"(pip install seqtasks[plot] draws the training curves to {tmp_path / 'curves.png'})"]
    assert not (tmp_path / "curves.png").exists()


def test_a_curve_that_cannot_be_written_costs_nothing_but_a_line(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    run = types.SimpleNamespace(path=tmp_path / "gone")  # no such folder
    assert write_curves(run, [{"epoch": 1, "lr": 1e-3, "loss": 2.0}], "val_loss", verbose=1) is None
    assert "no training curves" in capsys.readouterr().err


# ---- a: a run shows its overall progress and time left; evaluate and predict show a bar -----------

def test_the_time_left_is_the_budget_or_the_remaining_steps_whichever_ends_first():
    assert time_left(elapsed=60, budget_seconds=180, step=100, planned_steps=math.inf, seconds_per_step=0.5) == 120
    assert time_left(elapsed=60, budget_seconds=180, step=100, planned_steps=200, seconds_per_step=0.5) == 50
    assert time_left(elapsed=60, budget_seconds=0, step=100, planned_steps=300, seconds_per_step=0.5) == 100
    assert time_left(elapsed=60, budget_seconds=0, step=0, planned_steps=300, seconds_per_step=None) is None
    assert time_left(elapsed=200, budget_seconds=180, step=10, planned_steps=math.inf, seconds_per_step=1.0) == 0
    assert [format_duration(s) for s in (4.4, 125, 3725)] == ["4s", "2m05s", "1h02m"]
    assert run_progress(3, 30, 0.21, 142, 180) == "Epoch 3/30: 21% of the run, about 2m22s left (time budget 3m00s)"
    assert run_progress(2, None, 0.5, None, 60) == "Epoch 2: 50% of the run (time budget 1m00s)"


def test_a_budgeted_run_heads_each_epoch_with_the_runs_progress(tiny_runs, tmp_path):
    run, _ = tiny_runs("lm")  # one epoch of two steps, finished
    copy = tmp_path / "lm"
    shutil.copytree(run.path, copy)
    result = run_cli("resume", copy, "--epochs", "3", "--max-time", "10")
    assert result.exit_code == 0, result.output
    headings = [line for line in result.output.splitlines() if line.startswith("Epoch ")]
    assert [line.split(" of the run")[0] for line in headings] == ["Epoch 2/3: 33%", "Epoch 3/3: 67%"]
    assert all(line.endswith("left (time budget 10m00s)") for line in headings), headings
    assert "Epoch 2/2" not in result.output  # no per-call count from Keras


def test_a_progress_bar_counts_and_says_how_long_is_left():
    shown = io.StringIO()
    bar = ProgressBar("predicting", total=4, enabled=True, stream=shown, min_interval=0)
    bar.advance()
    assert bar.text().startswith("predicting [######..................] 1/4, 0s, about 0s left")
    bar.clear()
    assert shown.getvalue().endswith("\r\x1b[K")  # the line is wiped before other output
    assert ProgressBar("evaluating", enabled=True, stream=io.StringIO()).text() == "evaluating: 0s"
    silent = io.StringIO()
    with progress_bar("predicting", total=2, enabled=False, stream=silent, tick=0.01) as off:
        off.advance(2)
    assert silent.getvalue() == ""  # off the terminal nothing at all is written


def test_predict_and_evaluate_draw_their_bar_on_a_terminals_stderr_only(tiny_runs, monkeypatch):
    run, data = tiny_runs("classify")
    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: True)
    result = CliRunner().invoke(cli, ["predict", str(run.path), "a good film", "a dull film", "a film"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 3 and "\r" not in result.stdout and "[#" not in result.stdout
    assert "predicting [" in result.stderr and "3/3" in result.stderr and result.stderr.endswith("\r\x1b[K")
    as_json = CliRunner().invoke(cli, ["evaluate", str(run.path), "--data", data["data"], "--json"])
    assert as_json.exit_code == 0 and as_json.stderr == ""  # --json: the bar is off
    assert json.loads(as_json.stdout)["accuracy"] >= 0
    plain = CliRunner().invoke(cli, ["evaluate", str(run.path), "--data", data["data"]])
    assert plain.exit_code == 0 and f"evaluating {run.path}" in plain.stderr and "accuracy" in plain.stdout
    assert "evaluating" not in plain.stdout
    assert re.search(r"\] 40/40, ", plain.stderr), plain.stderr  # the fraction of the 40 examples, done


class CountingProgress:
    """A Progress that counts what it hears."""

    def __init__(self):
        self.expected = self.done = 0

    def expect(self, count: int) -> None:
        self.expected += count

    def advance(self, count: int = 1) -> None:
        assert self.done + count <= self.expected, "advanced past what was expected"
        self.done += count


@pytest.mark.parametrize("task", ["lm", "generate", "classify", "tag", "translate", "caption"])
def test_every_tasks_evaluate_reports_what_it_does_to_the_progress_given(tiny_runs, task):
    run, data = tiny_runs(task)
    counted = CountingProgress()
    if task == "caption":
        run.evaluate(images=data["images"], captions=data["captions"], progress=counted)
    else:
        run.evaluate(data["data"], progress=counted)
    assert counted.expected > 0 and counted.done == counted.expected
    assert run.progress is None  # only while evaluate runs: predict draws its own bar
