"""Character features of words: a vector per word from its spelling, for words never seen in training.

    cnn   c_{w,k} = C[char_k];  f_w = max_k ReLU(Conv1D_width3(c_w))_k           (Ma & Hovy 2016)
    lstm  f_w = [h→_last ; h←_first] of a BiLSTM over the characters of w        (Lample et al. 2016)

Shapes: char ids (batch, time, chars) -> features (batch, time, features). Character id 0 is padding
(inside a word and for padded words); padded characters never change a word's vector, and a padded
word (no characters) gets a vector of zeros (lstm) or the masked maximum's floor (cnn), which the
encoder's word mask then hides.
"""
from __future__ import annotations

import keras
from keras import ops

from seqtasks.layers.recurrent import RecurrentStack

from seqtasks.choices import CHAR_FEATURE_KINDS  # noqa: E402  (TF-free: the settings list them)
_MASKED = -1e9


@keras.saving.register_keras_serializable(package="seqtasks")
class CharFeatures(keras.layers.Layer):
    """Args: kind ("cnn" | "lstm"); char_vocab_size; char_dim (embedding width); units (CNN filters,
    or units per direction of the BiLSTM, so its features are 2 × units); width (CNN window).
    Call arguments: char_ids (batch, time, chars) int. Returns (batch, time, output_dim)."""

    def __init__(self, kind: str, char_vocab_size: int, char_dim: int = 32, units: int = 64, width: int = 3,
                 **kwargs):
        super().__init__(**kwargs)
        if kind not in ("cnn", "lstm"):
            raise ValueError(f"unknown character feature kind {kind!r}; expected 'cnn' or 'lstm'")
        self.kind, self.char_vocab_size, self.char_dim = kind, char_vocab_size, char_dim
        self.units, self.width = units, width
        p = self.dtype_policy
        self.embedding = keras.layers.Embedding(char_vocab_size, char_dim, name="char_embedding", dtype=p)
        if kind == "cnn":
            self.conv = keras.layers.Conv1D(units, width, padding="same", activation="relu", name="char_conv", dtype=p)
        else:
            self.recurrent = RecurrentStack("lstm", units, 1, bidirectional=True, name="char_lstm", dtype=p)
        self.output_dim = units if kind == "cnn" else 2 * units

    def build(self, input_shape):
        flat = (None, input_shape[-1])
        self.embedding.build(flat)
        if self.kind == "cnn":
            self.conv.build((*flat, self.char_dim))
        else:
            self.recurrent.build((*flat, self.char_dim))

    def call(self, char_ids):
        batch, time, chars = ops.shape(char_ids)[0], ops.shape(char_ids)[1], ops.shape(char_ids)[2]
        flat = ops.reshape(char_ids, (-1, chars))                     # (batch × time, chars)
        mask = flat != 0
        embedded = self.embedding(flat)
        if self.kind == "cnn":
            # zeroed padding keeps the convolution at a word's edge the same however long the padding
            embedded = embedded * ops.cast(mask, embedded.dtype)[..., None]
            convolved = self.conv(embedded)
            features = ops.max(ops.where(mask[..., None], convolved, ops.cast(_MASKED, convolved.dtype)), axis=1)
            features = ops.where(ops.any(mask, axis=1, keepdims=True), features, ops.zeros_like(features))
        else:
            _, states = self.recurrent(embedded, mask=mask)
            features = states[0][0]                                    # [h→ ; h←] of the one layer
        return ops.reshape(features, (batch, time, self.output_dim))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:2], self.output_dim)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "char_vocab_size": self.char_vocab_size,
                "char_dim": self.char_dim, "units": self.units, "width": self.width}
