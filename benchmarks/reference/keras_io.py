"""Reference compositions "the keras.io way", for side-by-side benchmarks.

The plain models a Keras user writes from the keras.io examples: keras.layers.LSTM stacks
("Character-level text generation with LSTM") and a miniature GPT built from
keras.layers.MultiHeadAttention blocks ("Text generation with a miniature GPT"), fp32, trained with
model.fit; generation by calling the model on the whole growing sequence for every new token.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import layers


def lstm_language_model(vocab_size: int, units: int = 256, num_layers: int = 2, seq_len: int = 128) -> keras.Model:
    inputs = keras.Input((seq_len,), dtype="int32")
    x = layers.Embedding(vocab_size, units)(inputs)
    for _ in range(num_layers):
        x = layers.LSTM(units, return_sequences=True)(x)
    return keras.Model(inputs, layers.Dense(vocab_size)(x), name="keras_io_lstm")


class TokenAndPositionEmbedding(layers.Layer):
    def __init__(self, max_length, vocab_size, d_model, **kwargs):
        super().__init__(**kwargs)
        self.token_embedding = layers.Embedding(vocab_size, d_model)
        self.position_embedding = layers.Embedding(max_length, d_model)

    def call(self, x):
        positions = keras.ops.arange(0, keras.ops.shape(x)[-1])
        return self.token_embedding(x) + self.position_embedding(positions)


class TransformerBlock(layers.Layer):
    def __init__(self, d_model, heads, hidden, rate=0.0, **kwargs):
        super().__init__(**kwargs)
        self.attention = layers.MultiHeadAttention(heads, d_model // heads)
        self.ffn = keras.Sequential([layers.Dense(hidden, activation="relu"), layers.Dense(d_model)])
        self.norm1 = layers.LayerNormalization(epsilon=1e-6)
        self.norm2 = layers.LayerNormalization(epsilon=1e-6)
        self.dropout1, self.dropout2 = layers.Dropout(rate), layers.Dropout(rate)

    def call(self, inputs, training=None):
        attention = self.attention(inputs, inputs, use_causal_mask=True)
        out1 = self.norm1(inputs + self.dropout1(attention, training=training))
        return self.norm2(out1 + self.dropout2(self.ffn(out1), training=training))


def transformer_language_model(vocab_size: int, d_model: int = 256, heads: int = 4, num_layers: int = 4,
                               seq_len: int = 128) -> keras.Model:
    inputs = keras.Input((None,), dtype="int32")
    x = TokenAndPositionEmbedding(seq_len, vocab_size, d_model)(inputs)
    for _ in range(num_layers):
        x = TransformerBlock(d_model, heads, 4 * d_model)(x)
    return keras.Model(inputs, layers.Dense(vocab_size)(x), name="keras_io_transformer")


def generate_by_recomputation(model: keras.Model, prompt: list[int], new_tokens: int,
                              window: int | None = None) -> list[int]:
    """keras.io's loop: run the model on the whole (or last `window`) sequence for each new token, greedy."""
    tokens = list(prompt)
    for _ in range(new_tokens):
        context = tokens[-window:] if window else tokens
        logits = model(np.array([context], dtype="int32"), training=False)
        tokens.append(int(np.argmax(keras.ops.convert_to_numpy(logits)[0, -1])))
    return tokens[len(prompt):]
