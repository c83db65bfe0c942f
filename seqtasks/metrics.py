"""Metrics, each equal to its textbook definition (tests check them against hand-computed values).

Language modeling: loss (nats/token), perplexity, bits per character.
Generation, translation, captioning: sacreBLEU's BLEU and chrF on detokenized text.
Classification: accuracy, macro-F1, per-class P/R/F1, confusion. Tagging: token accuracy, entity
(chunk) P/R/F1 with conlleval semantics.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Mapping, Sequence


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


def bleu_n(hypotheses: Sequence[str], references: Sequence[Sequence[str]], max_order: int,
           tokenized: bool = False) -> float:
    """sacreBLEU corpus BLEU with n-grams up to `max_order` (BLEU-1 ... BLEU-4 for captioning).
    `tokenized`: the text is already split into words and punctuation (silences sacreBLEU's warning)."""
    import sacrebleu

    return sacrebleu.metrics.BLEU(max_ngram_order=max_order, force=tokenized).corpus_score(
        list(hypotheses), [list(r) for r in references]).score


# ---- classification and tagging ------------------------------------------------------------------

def _precision_recall_f1(correct: int, predicted: int, actual: int) -> dict[str, float]:
    """P = correct / predicted, R = correct / actual, F1 = 2PR / (P + R); 0 where undefined."""
    precision = correct / predicted if predicted else 0.0
    recall = correct / actual if actual else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def classification_scores(gold: Sequence[int], predicted: Sequence[int], names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 (the unweighted mean of per-class F1 over the classes present in gold or
    predictions), per-class precision/recall/F1/support, and the confusion matrix
    (rows = gold, columns = predicted, both in `names` order)."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    confusion = [[0] * len(names) for _ in names]
    for g, p in zip(gold, predicted):
        confusion[g][p] += 1
    per_class: dict[str, dict[str, float]] = {}
    for i, name in enumerate(names):
        actual = sum(confusion[i])
        guessed = sum(row[i] for row in confusion)
        if actual or guessed:
            per_class[name] = {**_precision_recall_f1(confusion[i][i], guessed, actual), "support": actual}
    correct = sum(confusion[i][i] for i in range(len(names)))
    macro_f1 = sum(c["f1"] for c in per_class.values()) / len(per_class) if per_class else 0.0
    return {"accuracy": correct / len(gold) if gold else 0.0, "macro_f1": macro_f1, "per_class": per_class,
            "confusion": {"labels": list(names), "matrix": confusion}, "examples": len(gold)}


def unseen_warning(counts: Mapping[str, int], carriers: str, kind: str, consequence: str, shown: int = 5) -> str:
    """The one line that tells evaluate's user that gold CARRIERS ("12 tokens in 3 sentences") carry
    KINDs the run never saw in training (COUNTS: name -> how often, the commonest shown first), and
    how they were scored."""
    names = [name for name, _ in Counter(counts).most_common()]
    listed = ", ".join(names[:shown]) + (f", ... ({len(names)} in all)" if len(names) > shown else "")
    return f"seqtasks: warning: {carriers} carry {kind} the run never saw in training ({listed}); {consequence}"


def token_accuracy(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> float:
    """Share of tokens whose predicted tag equals the gold tag."""
    total = correct = 0
    for gold_tags, predicted_tags in zip(gold, predicted, strict=True):
        if len(gold_tags) != len(predicted_tags):
            raise ValueError("a sentence has a different number of gold and predicted tags")
        total += len(gold_tags)
        correct += sum(g == p for g, p in zip(gold_tags, predicted_tags))
    return correct / total if total else 0.0


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Chunk (entity) precision, recall and F1, overall and per type, with conlleval's semantics:
    chunks are read from each sentence's tags with conlleval's start/end rules (any of IOB1, BIO,
    IOBES), and a predicted chunk is correct when a gold chunk has the same start, end and type."""
    from seqtasks.schemes import spans

    counts: dict[str, list[int]] = {}  # type -> [correct, predicted, gold]
    for gold_tags, predicted_tags in zip(gold, predicted, strict=True):
        gold_chunks, predicted_chunks = set(spans(gold_tags)), set(spans(predicted_tags))
        for chunks, column in ((gold_chunks & predicted_chunks, 0), (predicted_chunks, 1), (gold_chunks, 2)):
            for _, _, kind in chunks:
                counts.setdefault(kind, [0, 0, 0])[column] += 1
    totals = [sum(c[i] for c in counts.values()) for i in range(3)]
    per_type = {kind: {**_precision_recall_f1(*c), "support": c[2]} for kind, c in sorted(counts.items())}
    return {**_precision_recall_f1(*totals), "per_type": per_type, "gold_chunks": totals[2],
            "predicted_chunks": totals[1]}
