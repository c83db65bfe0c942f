"""File formats -> examples. One module per family of formats:

    text.py      plain text corpora: file, folder, glob, .gz, tfds:NAME[:SPLIT]   (lm, generate)
    tables.py    TSV / CSV / JSONL records                                        (classify, generate)
    conll.py     CoNLL columns and CoNLL-U                                        (tag)
    parallel.py  parallel text: two files or a two-column TSV                     (translate)
    images.py    image folders with caption tables or COCO-style JSON             (caption)

Every reader raises seqtasks.errors.UserError naming the file (and line) for bad input.
"""
from seqtasks.readers.text import TextSource, open_text_file, open_text_source

__all__ = ["TextSource", "open_text_file", "open_text_source"]
