"""seqtasks.schemes in ops, for an exported tagger: predicted tag ids -> tags in the training data's
scheme, and the chunks (entities) as word offsets.

conlleval's rules (schemes.chunk_start / chunk_end) compare each tag with the one before it, so they
are computed for every position at once. A chunk is open after every tag that is not O (a start or
a continuation), so a chunk that starts at s ends at the first later position whose rule says the
chunk before it ends (a column of O after the last word closes the last chunk). Tags are then written
from the chunks as schemes.tags_from_spans writes them: chunks read from a valid sequence give it back.
"""
from __future__ import annotations

from typing import Sequence

import tensorflow as tf

from seqtasks.schemes import split_tag

_PREFIXES = ("O", "B", "I", "E", "S")
O, B, I, E, S = range(5)


def _isin(x, values):
    return tf.reduce_any(tf.stack([tf.equal(x, v) for v in values]), axis=0)


def _at_least_one(ragged: tf.RaggedTensor) -> tf.RaggedTensor:
    """A column more at the end of every row: gathers of a batch without any chunk stay in range."""
    return tf.concat([ragged, tf.zeros([ragged.nrows(), 1], ragged.dtype)], axis=1)


class ChunkTags(tf.Module):
    """ChunkTags(label names, internal scheme, output scheme)(ids (batch, time), lengths, words (batch, time))
    -> (tags (batch, time) strings, "" past each length; entities: starts, ends, types, texts, counts)."""

    def __init__(self, names: Sequence[str], internal: str, scheme: str):
        super().__init__()
        self.names, self.scheme = tf.constant(list(names)), scheme
        self.converted = internal != scheme  # schemes.convert leaves tags of the same scheme as they are
        self.chunked = "none" not in (internal, scheme)
        split = [split_tag(name) for name in names]
        self.types_list = sorted({kind for prefix, kind in split if prefix in _PREFIXES[1:] and kind})
        type_ids = {kind: i + 1 for i, kind in enumerate(self.types_list)}
        self.prefix_of = tf.constant([_PREFIXES.index(p) if p in _PREFIXES else O for p, _ in split], tf.int32)
        self.type_of = tf.constant([type_ids.get(kind, 0) for _, kind in split], tf.int32)
        self.type_names = tf.constant([""] + self.types_list)

    def __call__(self, ids, lengths, words):
        time = tf.shape(ids)[1]
        valid = tf.range(time, dtype=tf.int64)[None] < lengths[:, None]
        if not self.chunked:
            empty = {"entity_starts": tf.zeros([tf.shape(ids)[0], 0], tf.int64),
                     "entity_ends": tf.zeros([tf.shape(ids)[0], 0], tf.int64),
                     "entity_types": tf.fill([tf.shape(ids)[0], 0], ""), "entity_texts": tf.fill([tf.shape(ids)[0], 0], ""),
                     "entity_counts": tf.zeros([tf.shape(ids)[0]], tf.int64)}
            return tf.where(valid, tf.gather(self.names, ids), ""), empty
        prefix = tf.where(valid, tf.gather(self.prefix_of, ids), O)
        kind = tf.where(valid, tf.gather(self.type_of, ids), 0)
        prefix = tf.pad(prefix, [[0, 0], [0, 1]], constant_values=O)  # the closing column
        kind = tf.pad(kind, [[0, 0], [0, 1]])
        before = tf.pad(prefix[:, :-1], [[0, 0], [1, 0]], constant_values=O)
        before_kind = tf.pad(kind[:, :-1], [[0, 0], [1, 0]])
        changed = before_kind != kind
        start = _isin(prefix, (B, S)) | (_isin(before, (E, S, O)) & _isin(prefix, (E, I))) | ((prefix != O) & changed)
        ends = (_isin(before, (E, S)) | (_isin(before, (B, I)) & _isin(prefix, (B, S, O)))
                | ((before != O) & changed)) & (before != O)
        start = start[:, :-1] & (prefix[:, :-1] != O)
        positions = tf.range(time + 1)
        later = ends[:, None, :] & (positions[None, None, :] > positions[None, :-1, None])  # (batch, s, e)
        end_of = tf.argmax(tf.cast(later, tf.int32), axis=-1, output_type=tf.int32)  # first chunk end after s
        starts = tf.ragged.boolean_mask(tf.broadcast_to(positions[None, :-1], tf.shape(start)), start)
        chunk_ends = tf.ragged.boolean_mask(end_of, start)
        chunk_kinds = tf.ragged.boolean_mask(kind[:, :-1], start)
        if self.converted:
            tags = self._tags(prefix[:, :-1] != O, start, starts, chunk_ends, chunk_kinds, valid)
        else:
            tags = tf.where(valid, tf.gather(self.names, ids), "")
        inside = ((positions[None, None, :-1] >= starts.to_tensor(-1)[:, :, None])
                  & (positions[None, None, :-1] < chunk_ends.to_tensor(-1)[:, :, None]))
        spread = tf.broadcast_to(words[:, None, :], tf.shape(inside))
        texts = tf.strings.reduce_join(tf.ragged.boolean_mask(spread, inside), axis=-1, separator=" ")
        if isinstance(texts, tf.RaggedTensor):
            texts = texts.to_tensor("")
        entities = {"entity_starts": tf.cast(starts.to_tensor(-1), tf.int64),
                    "entity_ends": tf.cast(chunk_ends.to_tensor(-1), tf.int64),
                    "entity_types": tf.gather(self.type_names, chunk_kinds.to_tensor(0)),
                    "entity_texts": texts, "entity_counts": starts.row_lengths()}
        return tags, entities

    def _tags(self, in_chunk, start, starts, chunk_ends, chunk_kinds, valid):
        """schemes.tags_from_spans of the chunks, in self.scheme."""
        starts, chunk_ends, chunk_kinds = (_at_least_one(x) for x in (starts, chunk_ends, chunk_kinds))
        index = tf.maximum(tf.cumsum(tf.cast(start, tf.int32), axis=1) - 1, 0)  # the chunk of each position
        first = tf.gather(starts.to_tensor(0), index, batch_dims=1)
        end = tf.gather(chunk_ends.to_tensor(0), index, batch_dims=1)
        kind = tf.gather(chunk_kinds.to_tensor(0), index, batch_dims=1)
        position = tf.range(tf.shape(in_chunk)[1])[None]
        at_start = position == first
        if self.scheme == "bio":
            prefix = tf.where(at_start, "B", "I")
        elif self.scheme == "iobes":
            prefix = tf.where(end - first == 1, "S", tf.where(at_start, "B", tf.where(position == end - 1, "E", "I")))
        else:  # iob1: B- only where a chunk follows one of its own type without a gap
            previous = tf.maximum(index - 1, 0)
            previous_end = tf.gather(chunk_ends.to_tensor(-1), previous, batch_dims=1)
            previous_kind = tf.gather(chunk_kinds.to_tensor(-1), previous, batch_dims=1)
            touching = (index > 0) & (previous_end == first) & (previous_kind == kind)
            prefix = tf.where(at_start & touching, "B", "I")
        tags = tf.strings.join([prefix, "-", tf.gather(self.type_names, kind)])
        return tf.where(valid, tf.where(in_chunk, tags, "O"), "")
