"""The tokenizers and tag schemes in ops (seqtasks.graph_text, seqtasks.graph_schemes) give exactly what
the Python ones give: the exported graphs read and write text through them."""
from __future__ import annotations

import random

import pytest

CORPUS = ["Hello, world! It's a test.\nDon't stop: café über 3.5 U.S.A. (ok)", "the cat sat on the mat\nthe dog <unk> ran\n",
          "x_y  z\t tab\n\n a"]
TEXTS = ["Hello, world! can't", "", "the dog  ran\nnew line ünï ☃ 😀 <unk>", "  lead (paren) 'quote' don't it's CAN'T n't",
         "...", "a.b.c!!", '"(x)"', "Ünïcödé  ÉCOLE", "tab\there\n\nend  "]


@pytest.mark.parametrize("kind", ["char", "word", "whitespace", "spm"])
@pytest.mark.parametrize("lowercase", [False, True])
def test_a_tokenizer_in_ops_encodes_and_decodes_as_the_python_one(kind, lowercase):
    import tensorflow as tf

    from seqtasks.errors import UserError
    from seqtasks.graph_text import graph_tokenizer, sentencepiece_library
    from seqtasks.tokenizers import train_tokenizer

    if kind == "spm":
        try:
            sentencepiece_library()
        except UserError:
            pytest.skip("tensorflow-text is not installed (pip install seqtasks[export])")
    tokenizer = train_tokenizer(kind, CORPUS * 5, vocab_size=60 if kind == "spm" else None, lowercase=lowercase)
    graph = graph_tokenizer(tokenizer)
    expected = [tokenizer.encode(text) for text in TEXTS]
    assert graph.encode(tf.constant(TEXTS)).to_list() == expected
    # decoding drops pad/bos (and eos, except whitespace, which writes it as a line end) anywhere
    noisy = [[2] + ids + [3, 0] for ids in expected]
    decoded = [text.decode("utf-8") for text in graph.decode(tf.ragged.constant(noisy, dtype=tf.int32)).numpy()]
    assert decoded == [tokenizer.decode(ids) for ids in noisy]


def test_words_are_split_in_ops_as_sequence_inputs_splits_them():
    import tensorflow as tf

    from seqtasks.graph_text import classes_constant, split_words
    from seqtasks.sequence_inputs import split_words as python_split

    found = split_words(tf.constant(TEXTS), classes_constant()).to_list()
    assert [[word.decode("utf-8") for word in row] for row in found] == [python_split(text) for text in TEXTS]


@pytest.mark.parametrize("scheme", ["bio", "iob1", "iobes"])
def test_predicted_internal_tags_become_the_tags_and_entities_of_schemes(scheme):
    """Random (also invalid) IOBES sequences: tags as schemes.convert writes them, spans as schemes.spans reads them."""
    import tensorflow as tf

    from seqtasks import schemes
    from seqtasks.graph_schemes import ChunkTags

    names = ["B-LOC", "B-PER", "E-LOC", "E-PER", "I-LOC", "I-PER", "O", "S-LOC", "S-PER"]
    chunks = ChunkTags(names, "iobes", scheme)
    generator = random.Random(0)
    lengths = [generator.randint(0, 9) for _ in range(40)]
    ids = [[generator.randrange(len(names)) for _ in range(max(lengths))] for _ in lengths]
    words = [[f"w{i}" for i in range(max(lengths))] for _ in lengths]
    tags, entities = chunks(tf.constant(ids), tf.constant(lengths, tf.int64), tf.constant(words))
    for row, length in enumerate(lengths):
        internal = [names[i] for i in ids[row][:length]]
        expected = schemes.convert(internal, "iobes", scheme)
        assert [t.decode() for t in tags[row].numpy()[:length]] == expected
        count = int(entities["entity_counts"][row])
        found = [(int(s), int(e), t.decode()) for s, e, t in zip(entities["entity_starts"][row].numpy()[:count],
                                                                  entities["entity_ends"][row].numpy()[:count],
                                                                  entities["entity_types"][row].numpy()[:count])]
        assert found == schemes.spans(expected)
        texts = [t.decode() for t in entities["entity_texts"][row].numpy()[:count]]
        assert texts == [" ".join(words[row][s:e]) for s, e, _ in found]
