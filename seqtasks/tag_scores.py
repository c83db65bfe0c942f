"""What `seqtasks evaluate` reports of a tagger: predicted tags scored against gold ones.

Token accuracy always; for chunk tags (IOB1/BIO/IOBES) entity-level P/R/F1 with conlleval semantics and
per entity type, otherwise P/R/F1 per tag. Gold tags the run cannot predict (an entity type, or a plain
tag, never seen in training) are told in a warning line with their count and scored as they are: as
errors the run could not avoid, their entities staying gold, so recall counts them as missed (and
the type shows in per_type with recall 0).
"""
from __future__ import annotations

import sys
from collections import Counter
from typing import Any, Sequence

from seqtasks import schemes
from seqtasks.metrics import classification_scores, entity_scores, token_accuracy, unseen_warning


def tagging_scores(gold: list[list[str]], predicted: list[list[str]], trained_tags: Sequence[str],
                   chunked: bool) -> dict[str, Any]:
    """Scores of the predicted tags of each sentence; trained_tags are the run's (internal) tag set."""
    metrics: dict[str, Any] = {"accuracy": token_accuracy(gold, predicted), "sentences": len(gold),
                               "tokens": sum(len(g) for g in gold)}
    unseen = unseen_tags(gold, trained_tags, chunked)
    if unseen:
        metrics["unseen_tags"] = unseen
    if chunked:
        entities = entity_scores(gold, predicted)
        metrics.update({key: entities[key] for key in ("f1", "precision", "recall", "per_type")})
    else:
        names = sorted({t for row in gold + predicted for t in row})
        index = {name: i for i, name in enumerate(names)}
        flat = classification_scores([index[t] for row in gold for t in row],
                                     [index[t] for row in predicted for t in row], names)
        metrics["per_type"] = flat["per_class"]
    return metrics


def unseen_tags(gold: list[list[str]], trained_tags: Sequence[str], chunked: bool) -> dict[str, Any] | None:
    """Counts of the gold tags the run cannot predict (warned about on stderr), or None."""
    known = schemes.known_to(trained_tags, chunked)
    counts = Counter(tag for tags in gold for tag in tags if not known(tag))
    if not counts:
        return None
    tokens, sentences = sum(counts.values()), sum(not all(map(known, tags)) for tags in gold)
    consequence = ("they count as errors, and their entities as gold ones the run cannot find" if chunked
                   else "they count as errors")
    print(unseen_warning(counts, f"{tokens} tokens in {sentences} sentences", "tags", consequence),
          file=sys.stderr, flush=True)
    return {"tokens": tokens, "sentences": sentences, "tags": dict(counts.most_common())}
