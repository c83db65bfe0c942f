"""Losses shared by the sequence-to-sequence tasks (translation, captioning)."""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="seqtasks")
class SmoothedCrossEntropy(keras.losses.Loss):
    """Token cross-entropy with label smoothing, averaged over the tokens that are not padding:

        q = (1 - ε) onehot(y) + ε / V        (Szegedy et al. 2016; Vaswani et al. 2017 use ε = 0.1)
        loss = Σ_{t: y_t ≠ pad} -Σ_v q_v log p_v(t)  /  #{t: y_t ≠ pad}

    y_true (batch, time) int ids; y_pred (batch, time, V) logits. With ε = 0 this is exactly
    SparseCategoricalCrossentropy(from_logits=True, ignore_class=pad_id).
    """

    def __init__(self, smoothing: float = 0.1, pad_id: int = 0, name: str = "smoothed_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smoothing, self.pad_id = smoothing, pad_id

    def call(self, y_true, y_pred):
        log_p = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        y_true = ops.cast(y_true, "int32")
        gold = ops.squeeze(ops.take_along_axis(log_p, ops.expand_dims(y_true, -1), axis=-1), -1)
        per_token = -(1.0 - self.smoothing) * gold - self.smoothing * ops.mean(log_p, axis=-1)
        scored = ops.cast(ops.not_equal(y_true, self.pad_id), "float32")
        # one scalar per batch: the mean over real tokens, however much padding the batch holds
        return ops.sum(per_token * scored) / ops.maximum(ops.sum(scored), 1.0)

    def get_config(self):
        return {**super().get_config(), "smoothing": self.smoothing, "pad_id": self.pad_id}
