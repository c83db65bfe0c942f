"""Metrics, each equal to its textbook definition (tests check them against hand-computed values).

Language modeling: loss (nats/token), perplexity, bits per character.
Generation, translation, captioning: sacreBLEU's BLEU and chrF on detokenized text.
Classification and tagging metrics are added beside these.
"""
from __future__ import annotations

import math
from typing import Any, Sequence


def language_model_scores(total_nats: float, tokens: int, characters: int) -> dict[str, Any]:
    """loss = nats per token; perplexity = e^loss; bpc = total nats / characters / ln 2."""
    loss = total_nats / max(tokens, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)),
            "bpc": total_nats / max(characters, 1) / math.log(2), "tokens": tokens, "characters": characters}


def bleu_and_chrf(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, Any]:
    """sacreBLEU corpus BLEU and chrF. `references[k][i]` is the k-th reference of sentence i
    (several references per sentence: several lists). Returns scores and sacreBLEU signatures."""
    import sacrebleu

    bleu = sacrebleu.metrics.BLEU()
    chrf = sacrebleu.metrics.CHRF()
    bleu_score = bleu.corpus_score(list(hypotheses), [list(r) for r in references])
    chrf_score = chrf.corpus_score(list(hypotheses), [list(r) for r in references])
    return {"bleu": bleu_score.score, "chrf": chrf_score.score,
            "bleu_signature": str(bleu.get_signature()), "chrf_signature": str(chrf.get_signature())}


def bleu_n(hypotheses: Sequence[str], references: Sequence[Sequence[str]], max_order: int) -> float:
    """sacreBLEU corpus BLEU with n-grams up to `max_order` (BLEU-1 ... BLEU-4 for captioning)."""
    import sacrebleu

    return sacrebleu.metrics.BLEU(max_ngram_order=max_order).corpus_score(
        list(hypotheses), [list(r) for r in references]).score
