"""The try-it page of `seqtasks serve`, checked in headless Chromium, with a screenshot.

    python benchmarks/serve_page.py                    # trains a tiny char LSTM (seconds), serves it, checks the page
    python benchmarks/serve_page.py RUN --prompt "ROMEO:" --screenshot page.png

Needs Debian's chromium (`apt-get install -y chromium`); CI does not run it. The page is opened
as /?text=PROMPT&tokens=N&temperature=0&run=1, which fills the form and presses Run: Chromium
gives the page a virtual-time budget to stream the output in, then prints the DOM (checked: the
output box holds the text the server's /generate (or /predict) gives) and takes the screenshot
(default benchmarks/results/serve-page.png).
"""
from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from common import RESULTS, ROOT

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--hide-scrollbars", "--window-size=1000,700",
                  "--virtual-time-budget=20000"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tiny_lm(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "text.txt").write_text("ROMEO: what light through yonder window breaks?\n" * 40)
    import seqtasks

    return seqtasks.train("lm", out=str(folder / "run"), data=str(folder / "text.txt"), epochs=1, steps_per_epoch=150, lr=1e-2,
                          batch_size=16, units=64, layers=1, seq_len=32, sample_tokens=0, verbose=0).path


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", help="a run of a task with text inputs (default: a tiny char LSTM)")
    parser.add_argument("--prompt", default="ROMEO:")
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--screenshot", type=Path, default=RESULTS / "serve-page.png")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise SystemExit("chromium not found: apt-get install -y chromium")

    with tempfile.TemporaryDirectory() as folder:
        run = Path(args.run) if args.run else tiny_lm(Path(folder) / "lm")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "serve", str(run), "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(600):
                try:
                    info = json.loads(urllib.request.urlopen(url + "/info", timeout=5).read())
                    break
                except OSError:
                    time.sleep(0.3)
            else:
                raise SystemExit("the server did not start")
            if info["generative"]:
                body = {"prompt": args.prompt, "max_new_tokens": args.tokens, "temperature": 0}
                expected = post(url + "/generate", body)["text"]
                expected = (args.prompt if info["continues_prompt"] else "") + expected
            else:
                expected = json.dumps(post(url + "/predict", {"text": args.prompt})["output"], indent=2)
            query = urllib.parse.urlencode({"text": args.prompt, "tokens": args.tokens, "temperature": 0, "run": 1})
            page = f"{url}/?{query}"
            args.screenshot.parent.mkdir(parents=True, exist_ok=True)
            profile = Path(folder) / "profile"
            dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page],
                                 capture_output=True, text=True, timeout=120).stdout
            subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                            f"--screenshot={args.screenshot.resolve()}", page],
                           capture_output=True, text=True, timeout=120, check=True)
        finally:
            server.terminate()
            server.wait(60)
    found = re.search(r'<div id="output">(.*?)</div>', dom, re.S)
    shown = html.unescape(found.group(1)) if found else None
    status = re.search(r'<span id="status">(.*?)</span>', dom, re.S)
    print(f"page: {page}\nstatus: {status.group(1) if status else None}\nshown:    {shown!r}\nexpected: {expected!r}")
    print(f"screenshot: {args.screenshot} ({args.screenshot.stat().st_size:,} bytes)")
    if shown != expected:
        raise SystemExit("the page does not show what the server answers")


if __name__ == "__main__":
    main()
