"""Classification and tagging metrics against hand-computed values, conlleval's boundary cases included."""
import pytest

from seqtasks.metrics import classification_scores, entity_scores, token_accuracy


def test_classification_scores_by_hand():
    names = ["a", "b", "c"]
    gold = [0, 0, 0, 1, 1, 2]
    predicted = [0, 0, 1, 1, 2, 2]
    scores = classification_scores(gold, predicted, names)
    assert scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["confusion"]["matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    a, b, c = (scores["per_class"][n] for n in names)
    assert (a["precision"], a["recall"], a["support"]) == (1.0, pytest.approx(2 / 3), 3)
    assert (b["precision"], b["recall"]) == (0.5, 0.5)
    assert (c["precision"], c["recall"], c["f1"]) == (0.5, 1.0, pytest.approx(2 / 3))
    assert a["f1"] == pytest.approx(0.8)
    assert scores["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    # a class neither in gold nor predicted does not dilute macro-F1
    assert classification_scores([0, 1], [0, 1], ["a", "b", "unused"])["macro_f1"] == 1.0


def test_token_accuracy():
    assert token_accuracy([["A", "B"], ["C"]], [["A", "C"], ["C"]]) == pytest.approx(2 / 3)


def test_entity_scores_every_boundary_case_bio():
    gold = [["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "O", "B-ORG", "I-ORG", "I-ORG"],
            ["B-MISC", "O", "O"]]
    predicted = [["B-PER", "I-PER", "O",          # exact: correct
                  "B-LOC", "I-LOC",                # two gold LOC merged into one: 0 of 2, 1 false
                  "O", "B-ORG", "I-ORG", "O"],     # ORG cut short: wrong boundary
                 ["B-PER", "O", "B-LOC"]]          # right span, wrong type; one spurious chunk
    scores = entity_scores(gold, predicted)
    # gold chunks: PER, LOC, LOC, ORG, MISC = 5; predicted: PER, LOC(3-5), ORG(6-8), PER, LOC = 5; correct: 1
    assert (scores["gold_chunks"], scores["predicted_chunks"]) == (5, 5)
    assert scores["precision"] == pytest.approx(1 / 5) and scores["recall"] == pytest.approx(1 / 5)
    assert scores["f1"] == pytest.approx(1 / 5)
    per = scores["per_type"]
    assert per["PER"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    assert per["LOC"]["precision"] == 0.0 and per["LOC"]["support"] == 2
    assert per["MISC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_entity_scores_iob1_and_iobes_as_conlleval_reads_them():
    # IOB1: I- opens a chunk, B- splits two adjacent chunks of one type
    gold = [["I-PER", "I-PER", "B-PER", "O", "I-LOC"]]
    predicted = [["I-PER", "I-PER", "I-PER", "O", "I-LOC"]]   # the split is missed
    scores = entity_scores(gold, predicted)
    assert (scores["gold_chunks"], scores["predicted_chunks"]) == (3, 2)
    assert scores["precision"] == pytest.approx(1 / 2) and scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(0.4)
    # IOBES: S- single chunks, B- ... E-; a lone E- or I- after O still opens a chunk (conlleval)
    gold = [["S-PER", "B-LOC", "I-LOC", "E-LOC", "O", "S-ORG"]]
    predicted = [["S-PER", "B-LOC", "E-LOC", "E-LOC", "O", "I-ORG"]]
    scores = entity_scores(gold, predicted)
    # predicted chunks: PER(0), LOC(1-3), LOC(3), ORG(5) -> PER and ORG correct
    assert (scores["gold_chunks"], scores["predicted_chunks"]) == (3, 4)
    assert scores["precision"] == pytest.approx(2 / 4) and scores["recall"] == pytest.approx(2 / 3)


def test_entity_scores_without_chunks_are_zero_not_errors():
    scores = entity_scores([["O", "O"]], [["O", "O"]])
    assert scores["f1"] == 0.0 and scores["per_type"] == {}
