"""Load on `seqtasks serve`: N concurrent clients for a fixed time, batched against one-at-a-time.

    python benchmarks/serve_load.py                       # trains a 2×256 char LSTM (a minute), then measures
    python benchmarks/serve_load.py --train translate     # the demo's Transformer translator: POST /generate
    python benchmarks/serve_load.py RUN --clients 16 --seconds 30 --max-new-tokens 32
    python benchmarks/serve_load.py runs/sentiment        # a run that does not write text: POST /predict

The same run is served twice on 127.0.0.1, one server after the other: batched (--max-batch,
--batch-window-ms) and unbatched (--max-batch 1). Against each, `--clients` clients (asyncio, httpx,
one connection each) send requests back to back for `--warmup` seconds (not counted: the model's
functions trace for each new batch size) and then for `--seconds`: greedy /generate of short
prompts for a run that writes text, else /predict of short texts. Reported for each: requests/s,
p50/p99 latency, errors (any response but 200, or a failed connection; must be 0), the mean batch
the server ran (GET /info); and the ratio of the batched requests/s to the unbatched. Greedy
decoding, so the two servers' answers to the same prompt must agree (checked: batching never
changes an answer). Results: benchmarks/results/serve-load-TASK.json.

What batching gains depends on the engine: a language model's batch of prompts of different
lengths decodes in one loop (seqtasks.decoding right-aligns them), as a translation batch (every
decoder prompt is [BOS], the sources padded) or a /predict batch of texts (padded, masked) is one
model call.

The clients share the server's 2 cores, as on one machine they would. By default the servers run
with SEQTASKS_XLA=0 (graph decoding loops): XLA compiles a loop per batch size, and under load the
sizes vary; --xla keeps the default.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, write_result

PROMPTS = ["ROMEO:", "JULIET:", "First Citizen:", "KING HENRY:", "To be", "O, ", "What", "MENENIUS:"]
TEXTS = ["a charming film", "dull and slow", "not bad at all", "the best of the year", "I wanted to leave",
         "a quiet triumph", "it never ends", "fine"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


SMALL_RUNS = {  # the task's bundled demo data and model size, a few steps: what is measured is speed
    "lm": dict(units=256, layers=2, sample_tokens=0),                  # 2×256 char LSTM
    "classify": dict(),                                                # the demo's BiLSTM
    "translate": dict(sample_examples=0),                              # the demo's Transformer
}


def small_run(task: str, folder: Path) -> Path:
    import seqtasks

    run = seqtasks.train(task, out=str(folder / task), epochs=1, steps_per_epoch=5, batch_size=16, verbose=0,
                         **SMALL_RUNS[task])
    return run.path


class Served:
    def __init__(self, run: Path, flags: list[str], xla: bool):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, **({} if xla else {"SEQTASKS_XLA": "0"}))
        self.process = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "serve", str(run), "--port",
                                         str(self.port), *flags], env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited with {self.process.returncode}")
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        self.info = httpx.get(self.url + "/info", timeout=30).json()

    def batches(self) -> dict:
        import httpx

        return httpx.get(self.url + "/info", timeout=30).json()["batches"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)


def request_body(generative: bool, index: int, max_new_tokens: int) -> tuple[str, dict]:
    if generative:
        return "/generate", {"prompt": PROMPTS[index % len(PROMPTS)], "max_new_tokens": max_new_tokens,
                             "temperature": 0}
    return "/predict", {"text": TEXTS[index % len(TEXTS)]}


async def load(url: str, clients: int, seconds: float, generative: bool, max_new_tokens: int) -> dict:
    """`clients` clients sending requests back to back for `seconds`: latencies, errors, answers."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    answers: dict[str, object] = {}
    stop_at = time.monotonic() + seconds

    async def client(number: int):
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            index = number
            while time.monotonic() < stop_at:
                path, body = request_body(generative, index, max_new_tokens)
                index += clients
                start = time.perf_counter()
                try:
                    response = await http.post(path, json=body)
                except httpx.HTTPError as error:
                    errors.append(f"{type(error).__name__}: {error}")
                    continue
                latencies.append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors.append(f"{response.status_code}: {response.text[:200]}")
                    continue
                answer = response.json()
                answers.setdefault(body.get("prompt", body.get("text")), answer.get("text", answer.get("output")))

    began = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.monotonic() - began
    ordered = sorted(latencies)
    return {"requests": len(latencies), "seconds": round(elapsed, 2), "requests_per_s": round(len(latencies) / elapsed, 2),
            "p50_ms": round(1000 * statistics.median(ordered), 1) if ordered else None,
            "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1) if ordered else None,
            "errors": len(errors), "first_errors": errors[:3], "answers": answers}


def measure(run: Path, flags: list[str], args, label: str) -> tuple[dict, dict]:
    server = Served(run, flags, args.xla)
    try:
        generative = server.info["generative"]
        asyncio.run(load(server.url, args.clients, args.warmup, generative, args.max_new_tokens))
        before = server.batches()
        result = asyncio.run(load(server.url, args.clients, args.seconds, generative, args.max_new_tokens))
        after = server.batches()
    finally:
        server.stop()
    batches, inputs = after["count"] - before["count"], after["inputs"] - before["inputs"]
    result["mean_batch"] = round(inputs / batches, 2) if batches else None
    answers = result.pop("answers")
    print(f"{label}: {result['requests_per_s']} requests/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
          f"{result['errors']} errors, mean batch {result['mean_batch']}", flush=True)
    return {**result, "flags": flags, "task": server.info["task"]}, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", help="a run folder (default: train a small one of --train first)")
    parser.add_argument("--train", choices=sorted(SMALL_RUNS), default="lm",
                        help="without RUN: the task of the small run trained first (bundled demo data, 5 steps)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time per server")
    parser.add_argument("--warmup", type=float, default=10.0, help="load before the measured time, not counted")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--batch-window-ms", type=float, default=5.0)
    parser.add_argument("--xla", action="store_true", help="leave the servers' XLA default on")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        run = Path(args.run) if args.run else small_run(args.train, Path(folder))
        batched, batched_answers = measure(run, ["--max-batch", str(args.max_batch), "--batch-window-ms",
                                                 str(args.batch_window_ms)], args, "batched")
        unbatched, unbatched_answers = measure(run, ["--max-batch", "1"], args, "unbatched")
    shared = set(batched_answers) & set(unbatched_answers)
    disagree = sorted(key for key in shared if batched_answers[key] != unbatched_answers[key])
    ratio = round(batched["requests_per_s"] / unbatched["requests_per_s"], 2) if unbatched["requests_per_s"] else None
    print(f"batched / unbatched requests/s: {ratio}x; answers compared: {len(shared)}, differing: {len(disagree)}")
    write_result(f"serve-load-{batched['task']}", {"run": str(args.run or f"a small {args.train} run, 5 steps"), "clients": args.clients,
                                "seconds": args.seconds, "warmup": args.warmup, "max_new_tokens": args.max_new_tokens,
                                "xla": args.xla, "batched": batched, "unbatched": unbatched, "ratio": ratio,
                                "answers_compared": len(shared), "answers_differing": disagree})
    if batched["errors"] or unbatched["errors"] or disagree:
        raise SystemExit("errors under load, or batched answers that differ from unbatched ones")


if __name__ == "__main__":
    main()
