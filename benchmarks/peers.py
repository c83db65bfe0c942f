"""Peers: seqtasks against what a user would pick instead, PyTorch and KerasHub, side by side in one run.

    pip install -e ".[bench]"                    # torch (CPU build) and keras-hub; seqtasks needs neither
    python benchmarks/peers.py --rounds 3        # the full run (about 15 minutes on 2 shared cores)
    python benchmarks/peers.py --smoke --json /tmp/peers.json   # tiny shapes, no compiles: checks the script

Every contender is built, traced and compiled once, then the contenders are measured in turn, round
after round (A, B, C, A, B, C, ...), so a drift of this shared machine's speed hits them alike. A
ratio is seqtasks' figure over the peer's figure measured in the same round; the reported ratio is the
median of those per-round ratios (each round's is written too), tokens/s the median over rounds. The
fp32 and bf16 matmul peaks (tf.matmul of 2048² operands; torch.mm beside it) are measured at the start
of every round. All run with the same threads (`--threads`, 2).

Training tokens/s (the P-train shapes: batch 64 × context 128, char vocabulary 65; the median step of
`--steps` steps, start-up and compiles left out):
  - Transformer LM 4 × 256 (4 heads, GELU FFN 1024, tied output): seqtasks in bf16 mixed precision
    (its best setting on this CPU, the recommended config's model) against nanoGPT's model
    (benchmarks/reference/pytorch.py) in PyTorch eager and torch.compile, each fp32 and bf16 autocast.
    Target: ≥ 1.0x the best PyTorch configuration of the round. MFU: tokens/s × FLOPs per token
    (6 × non-embedding parameters + 12 × layers × context × d_model) over the bf16 peak; target ≥ 60%.
  - LSTM LM 2 × 256: seqtasks bf16 with `unroll` (straight-line steps, hand-written BPTT: its fastest)
    against nn.LSTM, the same four PyTorch configurations. Target: ≥ 1.5x the best.
Generation tokens/s (448 new tokens after a 64-token prompt, greedy, batch 1 and 8; fp32; a same-shape
4 × 256 decoder with context 512 and random weights, nothing downloaded):
  - seqtasks' decoding engine (its default XLA-compiled loop) against KerasHub's GPT2CausalLM.generate
    (cached, greedy sampler) on a GPT2Backbone built from a config, with its default compile (on a
    CPU: no XLA) and with jit_compile=True, the better of the two in each round; target ≥ 1.5x;
  - and against a PyTorch KV-cache loop (reference/pytorch.generate_greedy, eager, inference mode);
    target ≥ 1.0x.
`--json FILE` writes the result there too (the full run also writes benchmarks/results/peers.json).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from common import step_timer, write_result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per contender per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parts", default="train,generate", help="comma-separated: train, generate")
    parser.add_argument("--no-compile", action="store_true",
                        help="leave out torch.compile and the XLA variants (the smoke run does)")
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, 1 round, no compiles: checks the script")
    args = parser.parse_args(argv)
    sizes = dict(vocab=65, d_model=256, heads=4, layers=4, lstm_units=256, lstm_layers=2, seq_len=128, batch=64,
                 prompt=64, new_tokens=448, context=512, gen_batches=(1, 8))
    if args.smoke:
        sizes.update(d_model=32, heads=2, layers=1, lstm_units=32, lstm_layers=1, seq_len=16, batch=4,
                     prompt=8, new_tokens=8, context=16)
        args.rounds, args.steps, args.no_compile = 1, 2, True
    args.sizes = sizes
    return args


def median(values):
    return statistics.median(values) if values else None


class Rounds:
    """Contenders measured in turn each round; per-round values kept by name."""

    def __init__(self):
        self.values: dict[str, list[float]] = {}

    def add(self, name: str, value: float):
        self.values.setdefault(name, []).append(value)

    def medians(self) -> dict[str, float]:
        return {name: median(v) for name, v in self.values.items()}


def comparison(ours: list[float], peer: list[float], target: float | None, ours_name: str, peer_name: str) -> dict:
    per_round = [a / b for a, b in zip(ours, peer)]
    ratio = median(per_round)
    row = {"ours": ours_name, "peer": peer_name, "ratio": round(ratio, 3),
           "per_round": [round(r, 3) for r in per_round],
           "ours_tokens_per_s": round(median(ours)), "peer_tokens_per_s": round(median(peer))}
    if target is not None:
        row.update(target=target, met=ratio >= target)
    return row


def best_per_round(rounds: Rounds, names: list[str]) -> tuple[list[float], list[str]]:
    """The best of `names` in each round (value and which one)."""
    values, winners = [], []
    for i in range(len(rounds.values[names[0]])):
        name = max(names, key=lambda n: rounds.values[n][i])
        values.append(rounds.values[name][i])
        winners.append(name)
    return values, winners


def main(argv=None) -> dict:
    args = parse_args(argv)
    s = args.sizes
    parts = set(args.parts.split(","))
    if not args.smoke:  # traced steps and the XLA loop, as a user's runs have them (the test suite turns both off)
        os.environ["SEQTASKS_RUN_EAGERLY"] = "0"
        os.environ.pop("SEQTASKS_XLA", None)

    # waiting OpenMP threads sleep instead of spinning: on this shared, oversubscribed machine a spinning
    # thread takes the core its partner needs (PyTorch's 2-thread KV-cache loop ran 10x slower with spinning,
    # 1.5x with this); TensorFlow's own thread pool does not read it
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    try:
        import keras_hub
        import torch
    except ImportError as error:
        raise SystemExit(f"peers.py needs the bench extra (pip install -e '.[bench]'): {error}")
    torch.set_num_threads(args.threads)

    import keras
    import numpy as np

    import seqtasks  # noqa: F401  (registers the layers)
    from benchmarks.reference import pytorch as ref
    from common import matmul_peak
    from seqtasks import decoding
    from seqtasks.config import TrainConfig
    from seqtasks.models.language_model import RecurrentLanguageModel, TransformerLanguageModel
    from seqtasks.training import compile_model

    keras.utils.set_random_seed(0)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    V, T, B = s["vocab"], s["seq_len"], s["batch"]
    result: dict = {"target_id": "peers", "rounds": args.rounds, "threads": args.threads, "sizes": s,
                    "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "torch": torch.__version__,
                                 "keras_hub": keras_hub.__version__}, "comparisons": {}}

    # -- contenders ---------------------------------------------------------------------------------
    x_np = rng.integers(0, V, (B * (args.steps + 1), T)).astype("int32")
    y_np = rng.integers(0, V, (B * (args.steps + 1), T)).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((x_np, y_np)).batch(B)

    def seqtasks_trainer(model):
        model.build((None, T))
        compile_model(model, TrainConfig(),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(dataset.take(2), verbose=0)  # trace the step

        def measure():
            timer = step_timer()
            model.fit(dataset, verbose=0, callbacks=[timer])  # steps + 1 batches: `steps` intervals
            return B * T / statistics.median(timer.durations)
        return model, measure

    torch_batches = [(torch.from_numpy(x_np[i * B:(i + 1) * B]).long(), torch.from_numpy(y_np[i * B:(i + 1) * B]).long())
                     for i in range(args.steps)]

    def torch_trainer(make_model, compile_, bf16):
        trainer = ref.Trainer(make_model(), compile=compile_, bf16=bf16)
        for x, y in torch_batches[:2]:
            trainer.step(x, y)  # compile (torch.compile) and warm up

        def measure():
            return B * T / trainer.seconds_per_step(torch_batches)
        return measure

    torch_configs = {f"pytorch_{'compile' if c else 'eager'}_{'bf16' if b else 'fp32'}": (c, b)
                     for c in (False, True) for b in (False, True) if not (c and args.no_compile)}

    training: dict[str, dict] = {}
    flops_per_token = None
    if "train" in parts:
        print("building the training contenders (torch.compile takes a minute or two each)", flush=True)
        transformer, measure = seqtasks_trainer(TransformerLanguageModel(
            V, s["d_model"], s["heads"], s["layers"], max_length=T, activation="gelu", dtype="mixed_bfloat16"))
        non_embedding = sum(int(keras.ops.size(w)) for w in transformer.weights if "embedding" not in w.path)
        flops_per_token = 6 * non_embedding + 12 * s["layers"] * T * s["d_model"]
        training["transformer"] = {"seqtasks_bf16": measure}
        for name, (c, b) in torch_configs.items():
            training["transformer"][name] = torch_trainer(
                lambda: ref.GPT(V, s["d_model"], s["heads"], s["layers"], max_length=T), c, b)
        _, measure = seqtasks_trainer(RecurrentLanguageModel(V, "lstm", s["lstm_units"], s["lstm_layers"],
                                                             unroll=True, dtype="mixed_bfloat16"))
        training["lstm"] = {"seqtasks_bf16_unrolled": measure}
        for name, (c, b) in torch_configs.items():
            training["lstm"][name] = torch_trainer(
                lambda: ref.LSTMLanguageModel(V, s["lstm_units"], s["lstm_layers"]), c, b)

    generation: dict[int, dict] = {}
    if "generate" in parts:
        print("building the generation contenders", flush=True)
        L, P, N = s["context"], s["prompt"], s["new_tokens"]
        prompt = rng.integers(4, V, P).tolist()
        ours = TransformerLanguageModel(V, s["d_model"], s["heads"], s["layers"], max_length=L, name="transformer")
        ours(np.zeros((1, 2), "int32"))
        backbone = keras_hub.models.GPT2Backbone(vocabulary_size=V, num_layers=s["layers"], num_heads=s["heads"],
                                                 hidden_dim=s["d_model"], intermediate_dim=4 * s["d_model"],
                                                 dropout=0.0, max_sequence_length=L)
        hub_variants = {"keras_hub_default": "auto"}
        if not args.no_compile:
            hub_variants["keras_hub_xla"] = True
        hub_models = {}
        for name, jit in hub_variants.items():
            causal_lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
            causal_lm.compile(sampler="greedy", jit_compile=jit)
            hub_models[name] = causal_lm
        gpt = ref.GPT(V, s["d_model"], s["heads"], s["layers"], max_length=L).eval()
        config = decoding.GenerationConfig(max_new_tokens=N, temperature=0.0)
        for batch in s["gen_batches"]:
            token_ids = np.zeros((batch, P + N), "int32")
            token_ids[:, :P] = prompt
            hub_inputs = {"token_ids": token_ids, "padding_mask": np.arange(P + N)[None].repeat(batch, 0) < P}
            torch_prompts = torch.tensor([prompt] * batch)

            def ours_generate(batch=batch):
                out = decoding.generate(ours, [prompt] * batch, config)
                assert len(out[0][0]) == N, len(out[0][0])

            def hub_generate(model, inputs=hub_inputs):
                out = model.generate(inputs, stop_token_ids=None)
                assert out["padding_mask"].sum(axis=1).min() == P + N

            def torch_generate(prompts=torch_prompts, threads=args.threads):
                torch.set_num_threads(threads)
                try:
                    assert ref.generate_greedy(gpt, prompts, N).shape[1] == N
                finally:
                    torch.set_num_threads(args.threads)

            # one thread too: a batch-1 step's products are too small to share, and the better of the two counts
            functions = {"seqtasks": ours_generate, "pytorch_kv_cache": torch_generate,
                         "pytorch_kv_cache_1thread": lambda: torch_generate(threads=1),
                         **{name: (lambda m=m: hub_generate(m)) for name, m in hub_models.items()}}
            for name, function in functions.items():
                start = time.perf_counter()
                function()  # trace and compile
                print(f"  batch {batch} {name}: first call {time.perf_counter() - start:.1f} s", flush=True)

            def rate(function, batch=batch):
                start = time.perf_counter()
                function()
                return batch * N / (time.perf_counter() - start)
            generation[batch] = {name: (lambda f=f: rate(f)) for name, f in functions.items()}

    # -- figures ------------------------------------------------------------------------------------
    def report(final: bool) -> None:
        """The figures of the rounds so far, written after every round (a run cut short keeps them)."""
        result["matmul_peak_tflops"] = {
            key: {dtype: round(median(v) / 1e12, 3) for dtype, v in r.values.items()} |
                 {"per_round": {dtype: [round(x / 1e12, 3) for x in v] for dtype, v in r.values.items()}}
            for key, r in peaks.items()}
        targets = {"transformer": ("seqtasks_bf16", 1.0), "lstm": ("seqtasks_bf16_unrolled", 1.5)}
        comparisons = result["comparisons"]
        for arch, rounds in train_rounds.items():
            ours_name, target = targets[arch]
            ours = rounds.values[ours_name]
            peers = [n for n in rounds.values if n.startswith("pytorch")]
            best, winners = best_per_round(rounds, peers)
            comparisons[f"train_{arch}_vs_best_pytorch"] = {
                **comparison(ours, best, target, ours_name, "best PyTorch configuration of each round"),
                "best_per_round": winners}
            for peer in peers:
                comparisons[f"train_{arch}_vs_{peer}"] = comparison(ours, rounds.values[peer], None, ours_name, peer)
            result.setdefault("training_tokens_per_s", {})[arch] = {
                name: {"median": round(m), "per_round": [round(v) for v in rounds.values[name]]}
                for name, m in rounds.medians().items()}
        if "transformer" in train_rounds:
            ours = train_rounds["transformer"].values["seqtasks_bf16"]
            per_round = [rate * flops_per_token / peak for rate, peak in zip(ours, peaks["tf"].values["bf16"])]
            mfu = median(per_round)
            comparisons["mfu_transformer_vs_bf16_peak"] = {
                "ours": "seqtasks_bf16", "value": round(mfu, 3), "per_round": [round(m, 3) for m in per_round],
                "flops_per_token": flops_per_token, "target": 0.6, "met": mfu >= 0.6,
                "vs_fp32_peak": round(median([r * flops_per_token / p for r, p in zip(ours, peaks["tf"].values["fp32"])]), 3)}
        for batch, rounds in gen_rounds.items():
            ours = rounds.values["seqtasks"]
            hub = [n for n in rounds.values if n.startswith("keras_hub")]
            best, winners = best_per_round(rounds, hub)
            comparisons[f"generate_batch_{batch}_vs_keras_hub"] = {
                **comparison(ours, best, 1.5, "seqtasks", "KerasHub generate, the better compile of each round"),
                "best_per_round": winners}
            for name in hub:
                comparisons[f"generate_batch_{batch}_vs_{name}"] = comparison(ours, rounds.values[name], None, "seqtasks", name)
            loops = [n for n in rounds.values if n.startswith("pytorch")]
            best, winners = best_per_round(rounds, loops)
            comparisons[f"generate_batch_{batch}_vs_pytorch"] = {
                **comparison(ours, best, 1.0, "seqtasks", "PyTorch KV-cache loop, the better thread count of each round"),
                "best_per_round": winners}
            for name in loops:
                comparisons[f"generate_batch_{batch}_vs_{name}"] = comparison(ours, rounds.values[name], None, "seqtasks", name)
            result.setdefault("generation_tokens_per_s", {})[f"batch_{batch}"] = {
                name: {"median": round(m), "per_round": [round(v) for v in rounds.values[name]]}
                for name, m in rounds.medians().items()}
        result["targets_met"] = {name: row["met"] for name, row in comparisons.items() if "met" in row}
        result["rounds_done"] = len(peaks["tf"].values["fp32"])
        if not args.smoke and final:
            write_result("peers", result)
        elif final:
            print(json.dumps(result["comparisons"], indent=2))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({**result, "command": " ".join(["python"] + sys.argv)}, indent=2) + "\n")
    # -- the rounds ---------------------------------------------------------------------------------
    peaks = {key: Rounds() for key in ("tf", "torch")}
    train_rounds = {arch: Rounds() for arch in training}
    gen_rounds = {batch: Rounds() for batch in generation}
    for round_index in range(args.rounds):
        for dtype in ("fp32", "bf16"):
            peaks["tf"].add(dtype, matmul_peak(dtype))
            peaks["torch"].add(dtype, ref.matmul_peak(dtype))
        print(f"round {round_index + 1}: matmul peaks (TFLOP/s) tf fp32 {peaks['tf'].values['fp32'][-1] / 1e12:.3f}, "
              f"bf16 {peaks['tf'].values['bf16'][-1] / 1e12:.3f}", flush=True)
        for arch, contenders in training.items():
            for name, measure in contenders.items():
                train_rounds[arch].add(name, measure())
                print(f"round {round_index + 1} train {arch} {name}: {train_rounds[arch].values[name][-1]:,.0f} tokens/s",
                      flush=True)
        for batch, contenders in generation.items():
            for name, measure in contenders.items():
                gen_rounds[batch].add(name, measure())
                print(f"round {round_index + 1} generate batch {batch} {name}: "
                      f"{gen_rounds[batch].values[name][-1]:,.0f} tokens/s", flush=True)
        if round_index + 1 < args.rounds:
            report(final=False)

    report(final=True)
    return result


if __name__ == "__main__":
    main()
