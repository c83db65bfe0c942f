"""The try-it page of `seqtasks serve`, checked in headless Chromium, with a screenshot.

    python benchmarks/serve_page.py                    # trains a tiny char LSTM (seconds), serves it, checks the page
    python benchmarks/serve_page.py RUN --prompt "ROMEO:" --screenshot page.png

Needs Debian's chromium (`apt-get install -y chromium`); CI does not run it. Chromium runs
headless with its DevTools port open, driven over the DevTools protocol (a minimal WebSocket client
below: the standard library has none). The page is opened as /?text=PROMPT&tokens=N&temperature=0&run=1,
which fills the form and presses Run; the output box is read every 20 ms until the page says done
(checked: it showed the text growing, and ends with what the server's /generate, or /predict, gives),
then the screenshot is taken (default benchmarks/results/serve-page.png).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
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
                  "--disable-component-update", "--no-first-run", "--hide-scrollbars", "--window-size=1000,700"]


class DevTools:
    """The DevTools protocol of one page over a WebSocket (RFC 6455: masked client frames, text only)."""

    def __init__(self, websocket_url: str):
        address = urllib.parse.urlparse(websocket_url)
        self.socket = socket.create_connection((address.hostname, address.port), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.socket.sendall(f"GET {address.path} HTTP/1.1\r\nHost: {address.netloc}\r\nUpgrade: websocket\r\n"
                            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                            .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.socket.recv(1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise SystemExit(f"no WebSocket from Chromium: {head[:100]!r}")
        self.next_id = 0

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.socket.recv(count - len(data))
            if not chunk:
                raise SystemExit("Chromium closed the DevTools connection")
            data += chunk
        return data

    def _frame(self) -> bytes:
        message = b""
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(self._read(2), "big")
            elif length == 127:
                length = int.from_bytes(self._read(8), "big")
            message += self._read(length)
            if first & 0x80:  # FIN
                return message

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        payload = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        size = len(payload)
        header = bytes([0x81]) + (bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big")
                                  if size < 65536 else bytes([0x80 | 127]) + size.to_bytes(8, "big"))
        self.socket.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        while True:
            reply = json.loads(self._frame())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise SystemExit(f"{method}: {reply['error']}")
                return reply["result"]

    def value(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")


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
            debug_port = free_port()
            browser = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={Path(folder) / 'profile'}",
                                        f"--remote-debugging-port={debug_port}", "about:blank"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                for _ in range(300):
                    try:
                        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/json/list",
                                                                    timeout=5).read())
                        target = next(t for t in targets if t["type"] == "page")
                        break
                    except (OSError, StopIteration):
                        time.sleep(0.2)
                else:
                    raise SystemExit("chromium did not open its DevTools port")
                tools = DevTools(target["webSocketDebuggerUrl"])
                tools.call("Page.enable")
                tools.call("Page.navigate", url=page)
                seen: list[str] = []
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    status, shown = tools.value("['status', 'output'].map(id => document.getElementById(id))"
                                                ".map(box => box && box.textContent)") or (None, None)
                    if shown is not None and (not seen or shown != seen[-1]):
                        seen.append(shown)
                    if status == "done":
                        break
                    time.sleep(0.02)
                args.screenshot.parent.mkdir(parents=True, exist_ok=True)
                args.screenshot.write_bytes(base64.b64decode(tools.call("Page.captureScreenshot", format="png")["data"]))
            finally:
                browser.terminate()
                browser.wait(30)
        finally:
            server.terminate()
            server.wait(60)
    print(f"page: {page}\nstatus: {status}\nshown while streaming ({len(seen)} states): {seen!r}\n"
          f"expected: {expected!r}\nscreenshot: {args.screenshot} ({args.screenshot.stat().st_size:,} bytes)")
    if not seen or seen[-1] != expected:
        raise SystemExit("the page does not show what the server answers")
    if info["generative"] and len(seen) < 3:
        print("note: the text did not arrive in several pieces (a short output, or a fast model)")


if __name__ == "__main__":
    main()
