"""Readers of labeled text (TSV/CSV/JSONL/.gz) and tagged sentences (CoNLL/CoNLL-U): what they
return, and a one-line error naming the file and line for every bad input."""
import gzip
import json

import pytest

from seqtasks.errors import UserError
from seqtasks.readers.conll import pretokenized_sentences, read_tagged_sentences
from seqtasks.readers.tables import read_labeled_texts

CONLLU = """# sent_id = 1
# text = I don't know.
1\tI\tI\tPRON\tPRP\t_\t3\tnsubj\t_\t_
2-3\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
2\tdo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t0\troot\t_\t_
3.1\tknow\tknow\tVERB\tVB\t_\t_\t_\t0:root\t_
4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_

"""


def test_tsv_csv_jsonl_and_gz_read_alike(tmp_path):
    (tmp_path / "a.tsv").write_text('sentence\tlabel\nit is "good"\t1\nawful , really\t0\n')
    (tmp_path / "a.csv").write_text('label,text\n1,"it is ""good"""\n0,"awful , really"\n')
    (tmp_path / "a.jsonl").write_text('{"text": "it is \\"good\\"", "label": 1}\n\n{"text": "awful , really", "label": 0}\n')
    with gzip.open(tmp_path / "b.tsv.gz", "wt") as handle:
        handle.write('sentence\tlabel\nit is "good"\t1\nawful , really\t0\n')
    for name in ("a.tsv", "a.csv", "a.jsonl", "b.tsv.gz"):
        records = read_labeled_texts(str(tmp_path / name))
        assert [(r.text, r.label) for r in records] == [('it is "good"', "1"), ("awful , really", "0")], name
    assert read_labeled_texts(str(tmp_path / "a.tsv"))[1].where.endswith("a.tsv, line 3")


def test_named_and_indexed_columns(tmp_path):
    (tmp_path / "named.tsv").write_text("id\tverdict\tbody\n7\tspam\tbuy now\n8\tham\thello there\n")
    records = read_labeled_texts(str(tmp_path / "named.tsv"), text_col="body", label_col="verdict")
    assert [(r.text, r.label) for r in records] == [("buy now", "spam"), ("hello there", "ham")]
    (tmp_path / "plain.tsv").write_text("spam\tbuy now\nham\thello there\n")
    records = read_labeled_texts(str(tmp_path / "plain.tsv"), text_col="1", label_col="0")
    assert [(r.text, r.label) for r in records] == [("buy now", "spam"), ("hello there", "ham")]


@pytest.mark.parametrize("name, content, options, message, line", [
    ("cols.tsv", "text\tlabel\ngood\t1\ntoo\tmany\tcolumns\n", {}, "3 columns where the header has 2", 3),
    ("empty.tsv", "text\tlabel\ngood\t1\nbad\t\n", {}, "the label is empty", 3),
    ("notext.csv", "text,label\ngood,1\n,0\n", {}, "the text is empty", 3),
    ("missing.tsv", "text\tlabel\ngood\t1\n", {"label_col": "class"}, "no label column 'class'", 1),
    ("nohead.tsv", "words\tclass2\ngood\t1\n", {}, "no text column found", 1),
    ("index.tsv", "1\tgood\n0\tbad\n", {"text_col": "2", "label_col": "0"}, "column 2 is missing", 1),
    ("bad.jsonl", '{"text": "a", "label": 1}\n{"text": "b", label: 0}\n', {}, "not a JSON object", 2),
    ("key.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n', {}, "no 'label' key", 2),
])
def test_bad_tables_name_file_and_line(tmp_path, name, content, options, message, line):
    (tmp_path / name).write_text(content)
    with pytest.raises(UserError, match=message) as error:
        read_labeled_texts(str(tmp_path / name), **options)
    assert f"{name}, line {line}" in error.value.where


def test_conll_columns_docstart_and_tag_column(tmp_path):
    (tmp_path / "ner.conll").write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
                                        "Peter NNP B-NP B-PER\n")
    sentences = read_tagged_sentences(str(tmp_path / "ner.conll"))
    assert [(s.tokens, s.tags) for s in sentences] == [(("EU", "rejects"), ("B-ORG", "O")), (("Peter",), ("B-PER",))]
    assert sentences[0].where.endswith("ner.conll, line 3")
    pos = read_tagged_sentences(str(tmp_path / "ner.conll"), tag_col="1")
    assert pos[0].tags == ("NNP", "VBZ")


def test_conllu_skips_comments_ranges_and_empty_nodes(tmp_path):
    path = tmp_path / "ud.conllu"
    path.write_text(CONLLU)
    sentences = read_tagged_sentences(str(path))
    assert sentences[0].tokens == ("I", "do", "n't", ".") and sentences[0].tags == ("PRON", "AUX", "PART", "PUNCT")
    assert read_tagged_sentences(str(path), tag_col="xpos")[0].tags == ("PRP", "VBP", "RB", ".")
    assert len(sentences) == 2 and sentences[1].tokens == ("Yes",)
    plain = tmp_path / "ud.txt.gz"  # detected by its 10 tab-separated columns, read through gzip
    with gzip.open(plain, "wt") as handle:
        handle.write(CONLLU)
    assert read_tagged_sentences(str(plain)) == [s.__class__(s.tokens, s.tags, s.where.replace(str(path), str(plain)))
                                                 for s in sentences]


@pytest.mark.parametrize("content, options, message, line", [
    ("a DT O\nb NN\n", {}, "2 columns where the file's first token line has 3", 2),
    ("a DT O\n\nb NN B-X\n", {"tag_col": "5"}, "the tag column 5 is missing", 1),
    ("a DT O\nb NN O\n", {"tag_col": "upos"}, "is not a column", 1),
    ("1\tI\tI\tPRON\tPRP\t_\t0\troot\t_\t_\n2\tam\tbe\t_\tVBP\t_\t1\tcop\t_\t_\n", {}, "the tag .* is empty", 2),
])
def test_bad_conll_names_file_and_line(tmp_path, content, options, message, line):
    path = tmp_path / "bad.conll"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as error:
        read_tagged_sentences(str(path), **options)
    assert f"bad.conll, line {line}" in error.value.where


def test_pretokenized_input_lines():
    lines = ["# a comment", "John", "Smith\tNNP", "", "1\tParis\tParis\tPROPN\tNNP\t_\t0\troot\t_\t_", ""]
    assert list(pretokenized_sentences(lines)) == [[(1, "John"), (2, "Smith")], [(4, "Paris")]]


def test_tfds_source_with_text_and_class_label_features(tmp_path):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    class TinyLabeled(tfds.dataset_builders.TfDataBuilder):
        code_path = None  # built in a test: no module file to look up

    examples = {"text": ["a fine film", "a dull film", "great fun"], "label": [1, 0, 1]}
    builder = TinyLabeled(name="seqtasks_classify_tiny", version="1.0.0", data_dir=str(tmp_path),
                          split_datasets={"train": tf.data.Dataset.from_tensor_slices(examples)},
                          features=tfds.features.FeaturesDict({"text": tfds.features.Text(),
                                                               "label": tfds.features.ClassLabel(names=["neg", "pos"])}))
    builder.download_and_prepare()
    records = read_labeled_texts("tfds:seqtasks_classify_tiny:train", data_dir=str(tmp_path))
    assert sorted((r.text, r.label) for r in records) == [("a dull film", "neg"), ("a fine film", "pos"),
                                                          ("great fun", "pos")]
    with pytest.raises(UserError, match="no feature 'stars'"):
        read_labeled_texts("tfds:seqtasks_classify_tiny:train", label_col="stars", data_dir=str(tmp_path))
