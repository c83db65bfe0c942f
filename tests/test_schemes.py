"""Tag schemes: detection, conlleval span reading, and conversion that round-trips."""
import pytest

from seqtasks import schemes
from seqtasks.errors import UserError

# the same chunks written in each scheme: PER(0-2) LOC(3) LOC(4-5) directly after it, ORG(7)
SAME_CHUNKS = {
    "bio": ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-ORG"],
    "iob1": ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "O", "I-ORG"],
    "iobes": ["B-PER", "E-PER", "O", "S-LOC", "B-LOC", "E-LOC", "O", "S-ORG"],
}
CHUNKS = [(0, 2, "PER"), (3, 4, "LOC"), (4, 6, "LOC"), (7, 8, "ORG")]


@pytest.mark.parametrize("scheme", sorted(SAME_CHUNKS))
def test_spans_are_read_alike_in_every_scheme(scheme):
    assert schemes.spans(SAME_CHUNKS[scheme]) == CHUNKS
    assert schemes.detect([SAME_CHUNKS[scheme]]) == scheme


@pytest.mark.parametrize("source", sorted(SAME_CHUNKS))
@pytest.mark.parametrize("target", sorted(SAME_CHUNKS))
def test_conversion_between_all_schemes_round_trips(source, target):
    converted = schemes.convert(SAME_CHUNKS[source], source, target)
    assert converted == SAME_CHUNKS[target]
    assert schemes.convert(converted, target, source) == SAME_CHUNKS[source]


def test_conlleval_leniency_and_type_changes():
    # I- after O opens a chunk; a type change closes one chunk and opens another
    assert schemes.spans(["O", "I-PER", "I-LOC", "E-LOC", "B-ORG"]) == [(1, 2, "PER"), (2, 4, "LOC"), (4, 5, "ORG")]
    # an E- with nothing open is a chunk of its own; S- after B- closes the B chunk
    assert schemes.spans(["E-PER", "B-LOC", "S-LOC"]) == [(0, 1, "PER"), (1, 2, "LOC"), (2, 3, "LOC")]
    assert schemes.spans(["B-X", "I-X", "I-X"]) == [(0, 3, "X")]
    assert schemes.spans([]) == [] and schemes.spans(["O", "O"]) == []
    # an invalid sequence is normalized, then round-trips from there on
    assert schemes.convert(["O", "I-PER", "E-PER"], "bio", "iobes") == ["O", "B-PER", "E-PER"]


def test_detection_of_plain_tags_and_resolution():
    pos = [["DET", "NOUN", "VERB"], ["PRON", "O"]]
    assert schemes.detect(pos) == "none"
    assert schemes.detect([["O", "O"]]) == "none"
    assert schemes.convert(["DET", "NOUN"], "none", "iobes") == ["DET", "NOUN"]
    assert schemes.resolve_scheme("auto", [SAME_CHUNKS["iob1"]], "f") == "iob1"
    assert schemes.resolve_scheme("bio", [SAME_CHUNKS["bio"]], "f") == "bio"
    with pytest.raises(UserError, match="not chunk tags"):
        schemes.resolve_scheme("bio", pos, "f")
