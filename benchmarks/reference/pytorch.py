"""Reference models "the PyTorch way", for side-by-side benchmarks (benchmarks/peers.py; the bench extra).

What a PyTorch user would write for the P-train and P-gen shapes:

- `GPT`: nanoGPT's model (Karpathy), pre-LayerNorm blocks, exact GELU, biases, tied output, attention
  by `F.scaled_dot_product_attention` (its fused CPU kernel, causal). x_0 = E[ids] + P;
  x_l = x + Attn(LN(x)); x = x + MLP(LN(x));  logits = LN(x_L) Eᵀ.  Shapes (batch, time, d_model).
  `prefill` / `step` keep a preallocated KV cache (batch, heads, max_length, d_head) per layer, so a
  greedy loop never re-runs the prefix.
- `LSTMLanguageModel`: Embedding -> nn.LSTM (batch_first, oneDNN's RNN kernel on CPU) -> Linear.
- `Trainer`: one training step as nanoGPT takes it: forward (under bf16 autocast or not), cross
  entropy in fp32, backward, clip the global gradient norm at 1.0, fused AdamW (weight decay on
  matrices only), optionally the model wrapped in `torch.compile`.
"""
from __future__ import annotations

import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, d_model: int, heads: int):
        super().__init__()
        self.heads, self.d_head = heads, d_model // heads
        self.ln_1 = nn.LayerNorm(d_model, eps=1e-5)
        self.c_attn = nn.Linear(d_model, 3 * d_model)
        self.c_proj = nn.Linear(d_model, d_model)
        self.ln_2 = nn.LayerNorm(d_model, eps=1e-5)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def split(self, x):
        """(batch, time, 3 d_model) -> q, k, v each (batch, heads, time, d_head)."""
        batch, time_, _ = x.shape
        q, k, v = x.view(batch, time_, 3, self.heads, self.d_head).permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def merge(self, y):
        batch, _, time_, _ = y.shape
        return y.transpose(1, 2).reshape(batch, time_, self.heads * self.d_head)

    def forward(self, x):
        q, k, v = self.split(self.c_attn(self.ln_1(x)))
        x = x + self.c_proj(self.merge(F.scaled_dot_product_attention(q, k, v, is_causal=True)))
        return x + self.mlp(self.ln_2(x))

    def cached(self, x, cache, index: int):
        """x (batch, time, d_model) at positions index.. index+time; cache (K, V) each (batch, heads, L, d_head)."""
        q, k, v = self.split(self.c_attn(self.ln_1(x)))
        keys, values = cache
        end = index + x.shape[1]
        keys[:, :, index:end] = k
        values[:, :, index:end] = v
        # a prompt attends causally within itself; a single new token sees the whole filled prefix
        y = F.scaled_dot_product_attention(q, keys[:, :, :end], values[:, :, :end], is_causal=x.shape[1] > 1)
        x = x + self.c_proj(self.merge(y))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size: int, d_model: int = 256, heads: int = 4, num_layers: int = 4,
                 max_length: int = 128):
        super().__init__()
        self.heads, self.d_head, self.max_length = heads, d_model // heads, max_length
        self.wte = nn.Embedding(vocab_size, d_model)
        self.wpe = nn.Embedding(max_length, d_model)
        self.blocks = nn.ModuleList(Block(d_model, heads) for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(d_model, eps=1e-5)
        self.apply(self._init)

    @staticmethod
    def _init(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def embed(self, ids, index: int = 0):
        positions = torch.arange(index, index + ids.shape[1], device=ids.device)
        return self.wte(ids) + self.wpe(positions)

    def head(self, x):
        return F.linear(self.ln_f(x), self.wte.weight)  # tied to the input embedding

    def forward(self, ids):
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def empty_cache(self, batch: int, max_length: int):
        shape = (batch, self.heads, max_length, self.d_head)
        return [(torch.zeros(shape), torch.zeros(shape)) for _ in self.blocks]

    def cached(self, ids, caches, index: int):
        x = self.embed(ids, index)
        for block, cache in zip(self.blocks, caches):
            x = block.cached(x, cache, index)
        return self.head(x[:, -1])


@torch.inference_mode()
def generate_greedy(model: GPT, prompts: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """The KV-cache loop: prefill the prompts (batch, time) once, then one token per step, argmax."""
    batch, length = prompts.shape
    caches = model.empty_cache(batch, length + new_tokens)
    logits = model.cached(prompts, caches, 0)
    out = torch.empty((batch, new_tokens), dtype=torch.long)
    for i in range(new_tokens):
        token = logits.argmax(-1)
        out[:, i] = token
        if i + 1 < new_tokens:
            logits = model.cached(token[:, None], caches, length + i)
    return out


class LSTMLanguageModel(nn.Module):
    def __init__(self, vocab_size: int, units: int = 256, num_layers: int = 2):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, units)
        self.lstm = nn.LSTM(units, units, num_layers=num_layers, batch_first=True)
        self.output = nn.Linear(units, vocab_size)

    def forward(self, ids):
        hidden, _ = self.lstm(self.embedding(ids))
        return self.output(hidden)


class Trainer:
    """A training step of `model` on (batch, time) int64 ids; `compile` wraps the model in torch.compile
    (as nanoGPT does), `bf16` runs the forward pass under CPU autocast to bfloat16."""

    def __init__(self, model: nn.Module, compile: bool = False, bf16: bool = False, lr: float = 1e-3):
        self.model, self.bf16 = model, bf16
        self.forward = torch.compile(model) if compile else model
        matrices = [p for p in model.parameters() if p.dim() >= 2]
        others = [p for p in model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW([{"params": matrices, "weight_decay": 0.1},
                                            {"params": others, "weight_decay": 0.0}],
                                           lr=lr, betas=(0.9, 0.99), fused=True)

    def step(self, x, y) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.forward(x)
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()

    def seconds_per_step(self, batches) -> float:
        """Median seconds of one step over `batches` (each a pair x, y)."""
        durations = []
        for x, y in batches:
            start = time.perf_counter()
            self.step(x, y)
            durations.append(time.perf_counter() - start)
        return statistics.median(durations)


def matmul_peak(dtype_name: str, size: int = 2048, repeats: int = 8) -> float:
    """FLOP/s of torch.mm on two size² operands, median of `repeats` (beside TensorFlow's figure)."""
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * size ** 3 / statistics.median(times)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["GPT", "LSTMLanguageModel", "Trainer", "generate_greedy", "matmul_peak", "parameter_count"]
