"""The lm task's `--arch ngram`: an n-gram model estimated from counts, and its score on a corpus.

    train:     text --tokenizer--> ids (cached, as for the neural models) --ngram_counts--> tables --> model
    evaluate:  sum over the stream of -log p(x_t | the order - 1 tokens before it)

There is no training loop: the model is computed once, in closed form, from the training ids (the
same holdout as the neural models': the last --valid-fraction of the ids, or --valid). The held-out
score is computed once too, and is the run's one history row. Every token after the stream's first is
scored, as the neural models' evaluation scores them; an n-gram model's context never resets, where
the neural models' does at each window of --seq-len tokens (their first tokens then see less).
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from seqtasks import ngram_counts
from seqtasks.metrics import language_model_scores
from seqtasks.models.ngram import NgramLanguageModel
from seqtasks.pipeline import EncodedCorpus, training_corpora

SCORE_BLOCK = 1 << 14  # tokens scored at once (bounded memory)


def estimate_ngram(cfg, tokenizer, data) -> tuple[NgramLanguageModel, dict[str, Any]]:
    """The n-gram model of cfg (order, smoothing, discount, add_k) on data.train, and a history row:
    the held-out loss (nats per token), perplexity and bpc, and the counting speed."""
    vocab = tokenizer.vocab_size
    ngram_counts.check_key_size(vocab, cfg.order)  # before the corpus is read
    train, valid = training_corpora(data.train, data.valid, tokenizer, 1, cfg.valid_fraction)
    start = time.monotonic()
    tables = ngram_counts.count_ngrams(train.ids, cfg.order, vocab)
    counted = time.monotonic() - start
    levels = ngram_counts.smoothed_levels(tables, vocab, cfg.smoothing, cfg.discount, cfg.add_k)
    model = NgramLanguageModel.from_levels(levels, vocab, cfg.smoothing, name="language_model")
    seconds = time.monotonic() - start
    scores = corpus_scores(model, valid)
    row = {"epoch": 1, "val_loss": scores["loss"], "val_perplexity": scores["perplexity"], "val_bpc": scores["bpc"],
           "ngrams": int(sum(len(l.ngram_keys) for l in levels)), "train_tokens": len(train),
           "count_seconds": round(counted, 3), "tokens_per_second": round(len(train) / max(counted, 1e-9)),
           "seconds": round(seconds, 3)}
    return model, row


def stream_nats(model: NgramLanguageModel, ids: np.ndarray) -> tuple[float, int]:
    """(sum of -log p(ids[t] | ids[<t]) over t >= 1, the number of tokens scored), block by block."""
    import tensorflow as tf

    width = model.width
    # one trace for every block (the last is shorter); no autograph: the model's loops are over levels
    signature = (tf.TensorSpec((None, width), tf.int64), tf.TensorSpec((None, 1), tf.int64))
    score = tf.function(lambda contexts, targets: -tf.reduce_sum(model.next_log_probs(contexts, targets)),
                        input_signature=signature, autograph=False)
    total = 0.0
    for start in range(1, len(ids), SCORE_BLOCK):
        first = max(start - width, 0)
        piece = np.asarray(ids[first:start + SCORE_BLOCK], np.int64)
        contexts = ngram_counts.stream_contexts(piece, width)[start - first:]
        total += float(score(tf.constant(contexts), tf.constant(piece[start - first:, None])))
    return total, max(len(ids) - 1, 0)


def corpus_scores(model: NgramLanguageModel, corpus: EncodedCorpus) -> dict[str, Any]:
    """language_model_scores (loss, perplexity, bpc, tokens, characters) of an encoded corpus."""
    nats, tokens = stream_nats(model, corpus.ids)
    return language_model_scores(nats, tokens, corpus.characters)
