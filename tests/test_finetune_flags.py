"""finetune takes the data flags of RUN's task, as `train TASK` does, and refuses another task's."""
from __future__ import annotations

import json

from click.testing import CliRunner

from seqtasks.cli import cli


def finetune(*args):
    return CliRunner().invoke(cli, ["finetune", *map(str, args)])


def test_a_data_flag_of_another_task_is_one_line(tiny_runs, tmp_path):
    parent, data = tiny_runs("lm")
    (tmp_path / "src.txt").write_text("a b\n")
    result = finetune(parent.path, "--src", tmp_path / "src.txt", "--out", tmp_path / "tuned", "--epochs", "1",
                      "--quiet")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqtasks: error: --src does not apply to a lm run"), lines
    assert "--data" in lines[0]
    assert not (tmp_path / "tuned").exists()


def test_translate_finetunes_on_src_and_tgt(tiny_runs, tmp_path):
    parent, data = tiny_runs("translate")
    pairs = [line.split("\t") for line in open(data["data"], encoding="utf-8").read().splitlines()]
    (tmp_path / "new.src").write_text("".join(source + "\n" for source, _ in pairs))
    (tmp_path / "new.tgt").write_text("".join(target + "\n" for _, target in pairs))
    out = tmp_path / "tuned"
    result = finetune(parent.path, "--src", tmp_path / "new.src", "--tgt", tmp_path / "new.tgt", "--out", out,
                      "--epochs", "1", "--steps-per-epoch", "1", "--quiet")
    assert result.exit_code == 0, result.output + result.stderr
    settings = json.loads((out / "config.json").read_text())["settings"]
    assert settings["src"] == str(tmp_path / "new.src") and settings["tgt"] == str(tmp_path / "new.tgt")
    assert settings["data"] == ""  # the parent's pairs are not reused
