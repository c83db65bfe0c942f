"""P-gen: generation with the decoding engine (cached state) vs recomputing the prefix, same model.

    python benchmarks/generation_speed.py                      # the full run (about 10 minutes on 2 cores)
    python benchmarks/generation_speed.py --smoke              # tiny sizes: checks the script in ~1 minute

Side by side in one process, alternating (reference, engine, reference, engine, ...) for `rounds`, medians
reported; every function is warmed up (traced and compiled) before it is timed. The engine is timed
twice: as it runs by default (its loop compiled by XLA) and with `GenerationConfig(xla=False)` (the
loop as a tf.function graph); the first call of a shape, which traces and compiles, is recorded apart
(`engine_first_call_s`, `engine_graph_first_call_s`). Greedy decoding,
so both ways produce the same tokens (checked). Random weights: speed does not depend on what the model learned.

The reference loops run on the same seqtasks model with its call compiled once (a tf.function taking
any length, as keras.io's model.predict compiles): the strongest form of "call the model on the whole
sequence for each token". `--eager` also times the literal loop (keras_io.generate_by_recomputation
calling the model eagerly), which is slower still, for one round.

1. Transformer LM (4 × 256, context 512, char vocabulary): 448 new tokens after a 64-token prompt by
   the engine vs the keras.io way (benchmarks/reference/keras_io.generate_by_recomputation: the model
   called on the whole growing sequence for each token). Target ≥ 10x. Flat per-token cost: the
   engine's seconds per token at 448 new tokens ≤ 1.6x those at 64.
2. Char LSTM LM (2 × 256): the engine vs the keras.io char-LSTM loop (each character predicted from
   the last `window` = 40 characters). Target ≥ 50x.
3. Tokens per second of the engine for rnn, gru, lstm and transformer LMs at batch 1 and batch 8.
"""
from __future__ import annotations

import argparse
import statistics
import time

from common import write_result

VOCAB = 65  # tiny-shakespeare's characters + specials, roughly


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def median_times(functions: dict, rounds: int) -> dict[str, float]:
    """Alternate the functions round by round (A, B, A, B ...) and return each one's median seconds."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for round_index in range(rounds):
        for name, function in functions.items():
            times[name].append(timed(function))
            print(f"  round {round_index + 1} {name}: {times[name][-1]:.3f} s", flush=True)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=448)
    parser.add_argument("--short-tokens", type=int, default=64, help="the per-token cost is compared with this")
    parser.add_argument("--window", type=int, default=40, help="the keras.io char-LSTM loop's window")
    parser.add_argument("--rate-tokens", type=int, default=256, help="new tokens per tokens/s measurement")
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--transformer-layers", type=int, default=4)
    parser.add_argument("--lstm-layers", type=int, default=2)
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--eager", action="store_true", help="also time the references with eager model calls")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and few tokens, to check the script")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.prompt_tokens, args.new_tokens, args.short_tokens = 1, 8, 48, 16
        args.rate_tokens, args.units, args.context = 32, 64, 64

    import keras
    import numpy as np
    import tensorflow as tf

    import seqtasks  # noqa: F401  (registers the layers)
    from benchmarks.reference.keras_io import generate_by_recomputation
    from seqtasks import decoding
    from seqtasks.models.language_model import RecurrentLanguageModel, TransformerLanguageModel

    keras.utils.set_random_seed(0)
    heads = max(args.units // 64, 1)

    def transformer():
        model = TransformerLanguageModel(VOCAB, d_model=args.units, heads=heads, num_layers=args.transformer_layers,
                                         max_length=args.context, name="transformer")
        model(np.zeros((1, 2), "int32"))
        return model

    def recurrent(cell, layers=args.lstm_layers):
        model = RecurrentLanguageModel(VOCAB, cell=cell, units=args.units, num_layers=layers, name=cell)
        model(np.zeros((1, 2), "int32"))
        return model

    prompt = np.random.default_rng(0).integers(4, VOCAB, args.prompt_tokens).tolist()

    def engine(model, new_tokens, batch=1, xla=None):
        config = decoding.GenerationConfig(max_new_tokens=new_tokens, temperature=0.0, xla=xla)
        return lambda: decoding.generate(model, [prompt] * batch, config)

    def first_call_seconds(function) -> float:
        """The first call of a new shape: tracing (and, with XLA, compiling) included."""
        seconds = timed(function)
        print(f"  first call (trace/compile): {seconds:.2f} s", flush=True)
        return round(seconds, 2)

    class Compiled:
        """The model's forward pass compiled once for any length: what generate_by_recomputation calls."""

        def __init__(self, model):
            self.forward = tf.function(lambda ids: model(ids, training=False),
                                       input_signature=[tf.TensorSpec((1, None), tf.int32)])

        def __call__(self, ids, training=False):
            return self.forward(tf.constant(ids))

    def reference(model, new_tokens, window=None) -> dict:
        compiled = Compiled(model)
        generate_by_recomputation(compiled, prompt, 2, window=window)  # trace
        return {"recompute_compiled": lambda: generate_by_recomputation(compiled, prompt, new_tokens, window)}

    def eager_seconds(model, new_tokens, window=None) -> float | None:
        if not args.eager:
            return None
        seconds = timed(lambda: generate_by_recomputation(model, prompt, new_tokens, window=window))
        print(f"  recompute_eager (one round): {seconds:.3f} s", flush=True)
        return seconds

    def check_same_tokens(model, new_tokens, window=None):
        ours = decoding.generate(model, [prompt], decoding.GenerationConfig(max_new_tokens=new_tokens,
                                                                            temperature=0.0))[0][0]
        theirs = generate_by_recomputation(Compiled(model), prompt, new_tokens, window=window)
        agree = sum(a == b for a, b in zip(ours, theirs)) / max(len(ours), 1)
        print(f"  tokens agreeing with the reference: {agree:.0%}", flush=True)
        return agree

    def reference_figures(medians: dict, eager: float | None) -> dict:
        engine_seconds = medians["engine"]
        figures = {"reference_s": round(medians["recompute_compiled"], 3), "engine_s": round(engine_seconds, 3),
                   "speedup": round(medians["recompute_compiled"] / engine_seconds, 1),
                   "engine_graph_s": round(medians["engine_graph"], 3),
                   "speedup_graph": round(medians["recompute_compiled"] / medians["engine_graph"], 1)}
        if eager is not None:
            figures.update(reference_eager_s=round(eager, 3), speedup_vs_eager=round(eager / engine_seconds, 1))
        return figures

    result = {"target_id": "P-gen", "vocab": VOCAB, "prompt_tokens": args.prompt_tokens, "rounds": args.rounds}

    # 1. Transformer: engine vs recomputing the whole prefix, and the per-token cost
    print(f"transformer {args.transformer_layers} x {args.units}, context {args.context}:", flush=True)
    model = transformer()
    long, short = args.new_tokens, args.short_tokens
    agree = check_same_tokens(model, min(long, 32))
    first = first_call_seconds(engine(model, long))
    graph_first = first_call_seconds(engine(model, long, xla=False))
    for function in (engine(model, short), engine(model, short, xla=False)):
        function()  # trace and compile
    medians = median_times({**reference(model, long), "engine": engine(model, long),
                            "engine_short": engine(model, short), "engine_graph": engine(model, long, xla=False),
                            "engine_graph_short": engine(model, short, xla=False)}, args.rounds)
    per_token = {name: medians[name] / (short if name.endswith("short") else long)
                 for name in ("engine", "engine_short", "engine_graph", "engine_graph_short")}
    result["transformer"] = {
        "new_tokens": long, **reference_figures(medians, eager_seconds(model, long)),
        "target_speedup": 10.0, "greedy_tokens_agree": agree,
        "engine_first_call_s": first, "engine_graph_first_call_s": graph_first,
        "engine_ms_per_token": {str(long): round(1e3 * per_token["engine"], 3),
                                str(short): round(1e3 * per_token["engine_short"], 3)},
        "engine_graph_ms_per_token": {str(long): round(1e3 * per_token["engine_graph"], 3),
                                      str(short): round(1e3 * per_token["engine_graph_short"], 3)},
        "per_token_cost_ratio": round(per_token["engine"] / per_token["engine_short"], 2),
        "per_token_cost_ratio_graph": round(per_token["engine_graph"] / per_token["engine_graph_short"], 2),
        "target_per_token_cost_ratio": 1.6,
    }

    # 2. Char LSTM: engine vs the keras.io window loop
    print(f"char lstm {args.lstm_layers} x {args.units}, window {args.window}:", flush=True)
    model = recurrent("lstm")
    agree = check_same_tokens(model, min(long, 32), window=args.window)
    first = first_call_seconds(engine(model, long))
    graph_first = first_call_seconds(engine(model, long, xla=False))
    medians = median_times({**reference(model, long, args.window), "engine": engine(model, long),
                            "engine_graph": engine(model, long, xla=False)}, args.rounds)
    result["lstm"] = {
        "new_tokens": long, "window": args.window, "engine_first_call_s": first,
        "engine_graph_first_call_s": graph_first,
        **reference_figures(medians, eager_seconds(model, long, args.window)),
        "target_speedup": 50.0,
        "greedy_tokens_agree_with_window_loop": agree,  # the window loop forgets what lies before its window
    }

    # 3. tokens per second of the engine, per architecture and batch size
    rates = {}
    for arch in ("rnn", "gru", "lstm", "transformer"):
        model = transformer() if arch == "transformer" else recurrent(arch)
        functions = {}
        batches = {f"batch_{b}{'_graph' if graph else ''}": (b, False if graph else None)
                   for b in (1, 8) for graph in (False, True)}
        for name, (batch, xla) in batches.items():
            functions[name] = engine(model, args.rate_tokens, batch, xla)
            functions[name]()  # trace (and compile)
        print(f"{arch} tokens/s:", flush=True)
        medians = median_times(functions, args.rounds)
        rates[arch] = {name: round(batch * args.rate_tokens / medians[name]) for name, (batch, _) in batches.items()}
    result["tokens_per_s"] = {"new_tokens": args.rate_tokens, "units": args.units, **rates}
    result["targets_met"] = {
        "transformer_speedup": result["transformer"]["speedup"] >= 10,
        "transformer_speedup_graph": result["transformer"]["speedup_graph"] >= 10,
        "flat_per_token_cost": result["transformer"]["per_token_cost_ratio"] <= 1.6,
        "flat_per_token_cost_graph": result["transformer"]["per_token_cost_ratio_graph"] <= 1.6,
        "lstm_speedup": result["lstm"]["speedup"] >= 50,
        "lstm_speedup_graph": result["lstm"]["speedup_graph"] >= 50,
    }
    write_result("generation-speed-smoke" if args.smoke else "generation-speed", result)


if __name__ == "__main__":
    main()
