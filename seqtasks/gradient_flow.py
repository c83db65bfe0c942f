"""Gradient flow through time: how strongly the loss at the last step reaches back to each earlier state.

For a window of inputs x_1..x_T and the next token x_{T+1}:

    L_T = -log p(x_{T+1} | x_1..x_T)                 the loss at the last step only
    g_t = ‖∂L_T/∂h_t‖₂,   t = 1..T                    h_t the hidden state of one layer at step t

averaged over the windows of a batch (each window's own norm, then the mean; the windows never
interact, so the gradient of the batch's summed loss with respect to window b's h_t is that of
window b's loss). By the chain rule

    ∂L_T/∂h_t = ∂L_T/∂h_T · Π_{k=t+1..T} ∂h_k/∂h_{k-1}

rnn:   ∂h_k/∂h_{k-1} = diag(1 - h_k²) Uᵀ: a product of T - t such Jacobians shrinks (or grows)
       geometrically once tanh saturates or ‖U‖ ≠ 1: the vanishing (exploding) gradient;
lstm:  besides that path, h_{k-1} reaches c_k through the gates, and c_k = f ⊙ c_{k-1} + i ⊙ g
       carries it on multiplied only by the forget gate f (no squashing, no U): the additive cell
       state, which a forget gate near 1 keeps open over many steps.

How: the states are computed step by step (RecurrentLayer.step, the decoding path) with a zero
offset δ_t added to each layer's h_t; ∂L_T/∂δ_t = ∂L_T/∂h_t. The same offsets, non-zero, give the
finite-difference check in the tests. Inference mode: no dropout.

Shapes: token ids (batch, T + 1); the result (layers, T) of batch-mean norms, layer 0 the bottom one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from seqtasks.errors import UserError
from seqtasks.models.language_model import RecurrentLanguageModel


@dataclass
class GradientCurve:
    """‖∂L_T/∂h_t‖ for t = 1..T of one model on one batch; `norms[l][t-1]` for layer l (0 = bottom)."""

    arch: str
    weights: str                     # "init" or "trained"
    norms: list[list[float]]
    loss: float                      # the batch-mean L_T
    label: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bottom(self) -> list[float]:
        return self.norms[0]

    def decay_per_step(self, layer: int = 0) -> float:
        """exp of the least-squares slope of log g_t over t: the factor the gradient loses per step back
        (below 1: vanishing; above 1: growing)."""
        values = np.asarray(self.norms[layer], np.float64)
        keep = values > 0
        if keep.sum() < 2:
            return float("nan")
        steps = np.arange(1, len(values) + 1)[keep]
        slope = np.polyfit(steps, np.log(values[keep]), 1)[0]
        return float(math.exp(-slope))  # the norm shrinks going back (towards t = 1): a rising curve over t

    def as_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "weights": self.weights, "label": self.label or f"{self.arch} ({self.weights})",
                "loss": self.loss, "decay_per_step": self.decay_per_step(), "norms": self.bottom,
                "norms_per_layer": self.norms, **self.extra}


def check_recurrent(model) -> RecurrentLanguageModel:
    if not isinstance(model, RecurrentLanguageModel):
        raise UserError(f"the gradient through time needs a recurrent language model, not a {type(model).__name__}",
                        fix="pass a run trained with --arch rnn, gru or lstm, or use --arch instead of a run")
    return model


def last_step_loss(model: RecurrentLanguageModel, token_ids, offsets: Sequence[Sequence[Any]] | None = None):
    """Σ_b L_T^(b) over the batch, the states run step by step with h_t^(l) + offsets[l][t] (zero when
    offsets is None). token_ids (batch, T + 1): the inputs and, last, the target of step T."""
    import keras
    from keras import ops

    check_recurrent(model)
    inputs, target = token_ids[:, :-1], token_ids[:, -1]
    embedded = model.embedding(inputs)
    layers = model.recurrent.forward_layers
    states = model.recurrent.zero_state(ops.shape(inputs)[0])
    for t in range(inputs.shape[1]):
        x = embedded[:, t]
        for l, layer in enumerate(layers):
            x, layer_state = layer.step(x, states[l])
            if offsets is not None:
                x = x + offsets[l][t]
                layer_state = [x, *layer_state[1:]]  # the shifted h_t feeds both the next step and the layer above
            states[l] = layer_state
    logits = model.output_layer(x)
    if keras.backend.standardize_dtype(logits.dtype) in ("float16", "bfloat16"):
        logits = ops.cast(logits, "float32")  # mixed precision: the loss in float32, as in training
    return ops.sum(ops.sparse_categorical_crossentropy(target, logits, from_logits=True))


def hidden_state_gradients(model: RecurrentLanguageModel, token_ids) -> tuple[np.ndarray, float]:
    """(‖∂L_T/∂h_t^(l)‖ averaged over the batch, (layers, T)), and the batch-mean L_T."""
    grads, loss = state_gradients(model, token_ids)
    return np.linalg.norm(grads, axis=-1).mean(axis=-1), loss


def state_gradients(model: RecurrentLanguageModel, token_ids) -> tuple[np.ndarray, float]:
    """(∂L_T^(b)/∂h_t^(l) as an array (layers, T, batch, units), and the batch-mean L_T)."""
    import tensorflow as tf

    check_recurrent(model)
    token_ids = tf.convert_to_tensor(np.asarray(token_ids), tf.int32)
    batch, steps = int(token_ids.shape[0]), int(token_ids.shape[1]) - 1
    if steps < 1:
        raise UserError("the gradient through time needs at least one step", fix="pass --seq-len 1 or more")
    dtype = model.recurrent.compute_dtype
    offsets = [[tf.zeros((batch, model.units), dtype) for _ in range(steps)] for _ in model.recurrent.forward_layers]
    with tf.GradientTape() as tape:
        tape.watch(offsets)
        loss = last_step_loss(model, token_ids, offsets)
    grads = tape.gradient(loss, offsets)
    return np.asarray([[np.asarray(g, np.float64) for g in layer] for layer in grads]), float(loss) / batch


def sample_windows(ids: np.ndarray, seq_len: int, batch_size: int, seed: int = 0) -> np.ndarray:
    """batch_size windows of seq_len + 1 ids at seeded random places of the stream: (batch, seq_len + 1)."""
    ids = np.asarray(ids)
    if len(ids) < seq_len + 1:
        raise UserError(f"the text has {len(ids)} tokens, fewer than --seq-len {seq_len} + 1",
                        fix="use a longer text or a smaller --seq-len")
    starts = np.random.default_rng(seed).integers(0, len(ids) - seq_len, size=batch_size)
    return np.stack([ids[s:s + seq_len + 1] for s in starts]).astype(np.int32)


def fresh_copy(model: RecurrentLanguageModel, seed: int, seq_len: int) -> RecurrentLanguageModel:
    """The same architecture with newly initialised weights (seeded): the 'at initialisation' curve."""
    import keras

    keras.utils.set_random_seed(seed)
    copy = type(model).from_config(model.get_config())
    copy.build((None, seq_len))
    return copy


def new_model(arch: str, vocab_size: int, units: int, layers: int, seq_len: int, seed: int) -> RecurrentLanguageModel:
    import keras

    keras.utils.set_random_seed(seed)
    model = RecurrentLanguageModel(vocab_size, cell=arch, units=units, num_layers=layers, name="language_model")
    model.build((None, seq_len))
    return model


def curve(model, token_ids, arch: str, weights: str) -> GradientCurve:
    norms, loss = hidden_state_gradients(model, token_ids)
    return GradientCurve(arch, weights, norms.tolist(), loss)


def report(curves: Sequence[GradientCurve], seq_len: int, batch_size: int, source: str) -> dict[str, Any]:
    """The JSON of `seqtasks diagnose gradients`: t runs 1..T, norms[t-1] = ‖∂L_T/∂h_t‖ of the bottom layer."""
    return {"seq_len": seq_len, "batch_size": batch_size, "data": source,
            "what": "batch mean of ||dL_T/dh_t||, t = 1..T (norms: bottom layer)",
            "curves": [c.as_dict() for c in curves]}


MAX_TEXT_CHARS = 1_000_000  # the batch is drawn from the text's first million characters


def read_text(spec: str) -> str:
    """The first MAX_TEXT_CHARS characters of a text source (a file, folder, glob, .gz)."""
    from seqtasks.pipeline import corpus_pieces
    from seqtasks.readers import open_text_source

    pieces, size = [], 0
    for piece, _ in corpus_pieces(open_text_source(spec, role="the text to draw the batch from"), "char"):
        pieces.append(piece)
        size += len(piece)
        if size >= MAX_TEXT_CHARS:
            break
    return "".join(pieces)[:MAX_TEXT_CHARS]


def brief_fit(model: RecurrentLanguageModel, ids: np.ndarray, steps: int, seq_len: int, batch_size: int,
              seed: int, lr: float = 3e-3) -> float:
    """A few hundred AdamW steps (clipped at norm 1) on random windows of the text: enough for a small
    model to leave its initialisation, which is all the 'trained' curve of `--arch` needs (a run from
    `seqtasks train` is the real thing). Returns the last training loss."""
    import keras

    windows = sample_windows(ids, seq_len, steps * batch_size, seed=seed + 1)
    model.compile(optimizer=keras.optimizers.AdamW(lr, global_clipnorm=1.0),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(windows[:, :-1], windows[:, 1:], batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    return float(history.history["loss"][-1])


def draw(curves: Sequence[GradientCurve], path, seq_len: int) -> None:
    """‖∂L_T/∂h_t‖ over t on a log scale, one line per curve (dashed: at initialisation)."""
    from seqtasks import plotting

    plt = plotting.pyplot(path, "drawing the gradient flow")
    figure, axis = plt.subplots(figsize=(7, 4.2))
    colors = {}
    for c in curves:
        values = np.asarray(c.bottom, np.float64)
        steps = np.arange(1, len(values) + 1)
        keep = values > 0  # an underflow to 0 has no place on a log scale
        color = colors.setdefault(c.label or c.arch, f"C{len(colors)}")
        axis.plot(steps[keep], values[keep], color=color, linestyle="--" if c.weights == "init" else "-",
                  label=f"{c.label or c.arch} ({c.weights})")
    axis.set_yscale("log")
    axis.set_xlabel("t (step of the hidden state)")
    axis.set_ylabel(f"‖∂L_T/∂h_t‖, T = {seq_len}, batch mean")
    axis.set_title("How far back the last step's loss reaches")
    axis.legend(fontsize="small")
    figure.tight_layout()
    plotting.save(figure, path)


def diagnose(trained: Sequence[tuple[str, Any, Any, str]], archs: Sequence[str], data: str | None, seq_len: int | None,
             batch_size: int = 32, units: int = 128, layers: int = 1, train_steps: int = 200,
             seed: int = 0) -> tuple[list[GradientCurve], dict[str, Any]]:
    """Curves for each trained model (label, model, tokenizer, its data spec: the trained weights and
    the same architecture freshly initialised) and each fresh `arch` (at initialisation and after
    `train_steps` of brief_fit), on one batch of the text. Returns (curves, the JSON report)."""
    from seqtasks.data import bundled_path
    from seqtasks.tokenizers import train_tokenizer

    curves: list[GradientCurve] = []
    sources = []
    for label, model, tokenizer, model_data in trained:
        check_recurrent(model)
        source = data or model_data or str(bundled_path("tinyshakespeare.txt"))
        length = seq_len or 64
        ids = np.asarray(tokenizer.encode(read_text(source)))
        windows = sample_windows(ids, length, batch_size, seed)
        for weights, candidate in (("trained", model), ("init", fresh_copy(model, seed, length))):
            found = curve(candidate, windows, model.cell, weights)
            found.label = label
            curves.append(found)
        sources.append(source)
    if archs:
        source = data or str(bundled_path("tinyshakespeare.txt"))
        length = seq_len or 64
        text = read_text(source)
        tokenizer = train_tokenizer("char", [text])
        ids = np.asarray(tokenizer.encode(text))
        windows = sample_windows(ids, length, batch_size, seed)
        for arch in archs:
            model = new_model(arch, tokenizer.vocab_size, units, layers, length, seed)
            curves.append(curve(model, windows, arch, "init"))
            if train_steps:
                loss = brief_fit(model, ids, train_steps, length, batch_size, seed)
                trained_curve = curve(model, windows, arch, "trained")
                trained_curve.extra = {"train_steps": train_steps, "train_loss": loss}
                curves.append(trained_curve)
        sources.append(source)
    return curves, report(curves, seq_len or 64, batch_size, ", ".join(dict.fromkeys(sources)))
