"""A label or tag the run never saw in training is told at evaluate, in one warning line with the count,
and scored honestly: as an error, and (tagging) as a gold entity the run cannot find."""
import json

from click.testing import CliRunner

from seqtasks.cli import cli
from seqtasks.metrics import unseen_warning
from seqtasks.schemes import known_to


def evaluate(run, path):
    result = CliRunner().invoke(cli, ["evaluate", str(run.path), "--data", str(path), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr.strip().splitlines()


def test_chunk_tags_are_known_by_type_in_any_scheme_plain_tags_by_themselves():
    known = known_to(["O", "S-PER", "B-LOC", "I-LOC", "E-LOC"], chunked=True)
    assert [known(t) for t in ("O", "B-PER", "I-PER", "S-LOC", "B-creative-work", "X")] == [
        True, True, True, True, False, False]
    plain = known_to(["NN", "VB"], chunked=False)
    assert [plain(t) for t in ("NN", "JJ", "B-NN")] == [True, False, False]


def test_the_warning_is_one_line_commonest_first():
    line = unseen_warning({"b": 1, "a": 5, "c": 2, "d": 1, "e": 1, "f": 1}, "11 tokens in 3 sentences", "tags",
                          "they count as errors", shown=3)
    assert line == ("seqtasks: warning: 11 tokens in 3 sentences carry tags the run never saw in training "
                    "(a, c, b, ... (6 in all)); they count as errors")


def test_tags_unseen_in_training_are_warned_of_and_stay_gold_entities(tiny_runs, tmp_path):
    run, _ = tiny_runs("tag")  # trained on PER and LOC
    path = tmp_path / "test.conll"
    path.write_text("John X B-PER\nsaw X O\nDune X B-creative-work\nagain X I-creative-work\n\n"
                    "Mary X B-PER\nran X O\n\nMatrix X B-creative-work\n\n")
    metrics, lines = evaluate(run, path)
    assert lines == ["seqtasks: warning: 3 tokens in 2 sentences carry tags the run never saw in training "
                     "(B-creative-work, I-creative-work); they count as errors, and their entities as gold ones "
                     "the run cannot find"]
    assert metrics["unseen_tags"] == {"tokens": 3, "sentences": 2, "tags": {"B-creative-work": 2, "I-creative-work": 1}}
    assert metrics["per_type"]["creative-work"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert metrics["recall"] <= 2 / 4 and metrics["accuracy"] <= 6 / 9


def test_labels_unseen_in_training_are_warned_of_and_count_as_errors(tiny_runs, tmp_path):
    run, _ = tiny_runs("classify")  # trained on pos and neg
    path = tmp_path / "test.tsv"
    path.write_text("text\tlabel\n" + "a good film\tpos\na dull film\tneg\n" * 3 + "a film\tmeh\n" * 2
                    + "a good dull film\tmixed\n")
    metrics, lines = evaluate(run, path)
    assert lines == ["seqtasks: warning: 3 of 9 examples carry labels the run never saw in training (meh, mixed); "
                     "they count as errors (their classes score 0 and enter macro-F1)"]
    assert metrics["unseen_labels"] == {"examples": 3, "labels": {"meh": 2, "mixed": 1}}
    assert metrics["accuracy"] <= 6 / 9 and metrics["examples"] == 9
    assert metrics["confusion"]["labels"] == ["neg", "pos", "meh", "mixed"]
    assert metrics["per_class"]["meh"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert metrics["macro_f1"] <= 2 / 4


def test_no_warning_when_every_label_was_seen(tiny_runs, tmp_path):
    run, _ = tiny_runs("classify")
    path = tmp_path / "test.tsv"
    path.write_text("text\tlabel\na good film\tpos\na dull film\tneg\n")
    metrics, lines = evaluate(run, path)
    assert lines == [] and "unseen_labels" not in metrics
