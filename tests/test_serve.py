"""`seqtasks serve`: the server started as a real process (cli.py serve RUN on a free local port) and
used over HTTP with httpx: the endpoints give what the API gives, concurrent requests share batches,
a stream's events join to the text, bad requests are 4xx JSON naming the field and leave the server
up, and SIGTERM lets a request in flight finish. Two servers (an lm run: text in, text out; a
caption run: images in), each started once per module; a classify run is served in-process."""
from __future__ import annotations

import base64
import concurrent.futures
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="seqtasks serve needs the serve extra: pip install 'seqtasks[serve]'")
pytest.importorskip("uvicorn", reason="seqtasks serve needs the serve extra: pip install 'seqtasks[serve]'")
httpx = pytest.importorskip("httpx", reason="the tests talk to the server with httpx (the serve extra)")

ROOT = Path(__file__).resolve().parent.parent
LIMITS = ["--max-text-chars", "50", "--max-new-tokens", "40", "--max-request-bytes", "20000", "--max-inputs", "8"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`python cli.py serve RUN --port P ...` as a process, ready once /health answers."""

    def __init__(self, run_path: Path, *flags: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "serve", str(run_path), "--port",
                                         str(self.port), *flags], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, cwd=ROOT)
        self.client = httpx.Client(base_url=self.url, timeout=60)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited ({self.process.returncode}):\n{self.process.stdout.read()}")
            try:
                if self.client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError("the server did not answer /health in 180 s")

    def post(self, path: str, body) -> httpx.Response:
        return self.client.post(path, json=body)

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.client.close()
        return self.process.stdout.read()


def events(response: httpx.Response) -> list[tuple[str, dict]]:
    """(event, data) of a server-sent-events body."""
    found = []
    for block in response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            found.append((lines.get("event", "message"), json.loads(lines["data"])))
    return found


@pytest.fixture(scope="module")
def lm(tiny_runs):
    run, _ = tiny_runs("lm")
    server = Server(run.path, "--batch-window-ms", "50", "--max-batch", "16", *LIMITS)
    yield run, server
    server.stop()


@pytest.fixture(scope="module")
def caption(tiny_runs):
    run, data = tiny_runs("caption")
    server = Server(run.path, *LIMITS)
    yield run, server, sorted(Path(data["images"]).glob("*.png"))
    server.stop()


def test_health_info_docs_and_page(lm):
    run, server = lm
    assert server.client.get("/health").json()["status"] == "ok"
    info = server.client.get("/info").json()
    assert info["run"]["settings"] == run.record["settings"] and info["generative"] and info["input"] == "text"
    assert info["settings"]["host"] == "127.0.0.1" and info["settings"]["max_new_tokens"] == 40
    paths = server.client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/generate", "/health", "/info"} <= set(paths)
    assert "temperature" in json.dumps(server.client.get("/openapi.json").json()["components"])
    page = server.client.get("/")
    assert page.headers["content-type"].startswith("text/html") and "<textarea" in page.text and "/generate" in page.text


def test_predict_and_generate_give_what_the_api_gives(lm):
    run, server = lm
    prompts = ["ab", "abcd", "h"]
    assert server.post("/predict", {"texts": prompts, "max_new_tokens": 6}).json() == \
        {"outputs": list(run.predict(prompts, max_new_tokens=6))}
    assert server.post("/predict", {"text": "ab", "max_new_tokens": 6}).json() == {"output": run.predict(["ab"], max_new_tokens=6).__next__()}
    generated = server.post("/generate", {"prompt": "ab", "max_new_tokens": 8, "temperature": 0}).json()
    assert generated["text"] == run.sample("ab", max_new_tokens=8, temperature=0)
    sampled = server.post("/generate", {"prompt": "ab", "max_new_tokens": 8, "temperature": 1.0, "seed": 3,
                                        "num_return_sequences": 2}).json()
    assert sampled["texts"] == run.sample("ab", max_new_tokens=8, temperature=1.0, seed=3, num_return_sequences=2)
    # no max_new_tokens: the run's default (100 tokens), held to the server's --max-new-tokens 40
    assert server.client.get("/info").json()["default_max_new_tokens"] == 40
    assert server.post("/generate", {"prompt": "ab", "temperature": 0}).json()["text"] == \
        run.sample("ab", max_new_tokens=40, temperature=0) != run.sample("ab", temperature=0)


def test_concurrent_requests_share_batches_and_get_their_own_answers(lm):
    run, server = lm
    prompts = [("ab", "abc", "gh", "a")[i % 4] for i in range(16)]
    before = server.client.get("/info").json()["batches"]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda p: httpx.post(server.url + "/generate", timeout=60, json={
            "prompt": p, "max_new_tokens": 5, "temperature": 0}).json()["text"], prompts))
    expected = {p: run.sample(p, max_new_tokens=5, temperature=0) for p in set(prompts)}
    assert answers == [expected[p] for p in prompts]
    after = server.client.get("/info").json()["batches"]
    batches, inputs = after["count"] - before["count"], after["inputs"] - before["inputs"]
    assert inputs == 16 and batches < 16, f"16 concurrent requests ran in {batches} batches"


def test_a_streamed_generation_arrives_in_pieces_that_join_to_the_text(lm):
    run, server = lm
    body = {"prompt": "ab", "max_new_tokens": 12, "temperature": 0.9, "seed": 5}
    with server.client.stream("POST", "/generate", json={**body, "stream": True}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        response.read()
    found = events(response)
    pieces = [data["text"] for kind, data in found if kind == "message"]
    assert len(pieces) > 1 and found[-1][0] == "done"
    assert "".join(pieces) == found[-1][1]["text"] == server.post("/generate", body).json()["text"]
    assert found[-1][1]["text"] == run.sample("ab", max_new_tokens=12, temperature=0.9, seed=5)


BAD_REQUESTS = [  # (path, body: dict or raw bytes, status, field)
    ("/predict", b'{"texts": ["ab"', 400, "body"),                     # malformed JSON
    ("/predict", b"", 422, "body"),                                    # no body
    ("/predict", b"\xff\xfe{", 400, "body"),                            # not UTF-8
    ("/predict", b"[" * 3000 + b"]" * 3000, 400, "body"),              # nested deeper than the parser goes
    ("/generate", b'{"prompt": "ab", "temperature": NaN}', 422, "temperature"),
    ("/predict", {}, 422, "text"),                                     # no input
    ("/predict", {"text": "ab", "texts": ["ab"]}, 422, "text"),        # both
    ("/predict", {"text": 5}, 422, "text"),                            # wrong type
    ("/predict", {"texts": ["ab", 3]}, 422, "texts[1]"),
    ("/predict", {"texts": "ab"}, 422, "texts"),
    ("/predict", {"text": "a" * 51}, 422, "text"),                     # too long
    ("/predict", {"texts": ["ab"] * 9}, 422, "texts"),                 # too many
    ("/predict", {"texts": []}, 422, "texts"),
    ("/predict", {"text": "ab", "temprature": 1}, 422, "temprature"),  # unknown field
    ("/predict", {"text": "ab", "plot": "/tmp/x.png"}, 422, "plot"),   # withheld: writes a file on the server
    ("/predict", {"text": "ab", "max_new_tokens": 41}, 422, "max_new_tokens"),
    ("/generate", {"prompt": "ab", "temperature": -1}, 422, "temperature"),
    ("/generate", {"prompt": "ab", "temperature": "hot"}, 422, "temperature"),
    ("/generate", {"prompt": "ab", "top_p": 0}, 422, "top_p"),
    ("/generate", {"prompt": "ab", "top_p": 1.5}, 422, "top_p"),
    ("/generate", {"prompt": "ab", "top_k": -1}, 422, "top_k"),
    ("/generate", {"prompt": "ab", "max_new_tokens": 1000}, 422, "max_new_tokens"),
    ("/generate", {"prompt": "ab", "max_new_tokens": 2.5}, 422, "max_new_tokens"),
    ("/generate", {"prompt": "ab", "beam_width": 99}, 422, "beam_width"),
    ("/generate", {"prompt": "ab", "seed": -1}, 422, "seed"),
    ("/generate", {"prompt": "ab", "stream": "yes"}, 422, "stream"),
    ("/generate", {"prompt": "ab", "stream": True, "beam_width": 2}, 422, "beam_width"),
    ("/generate", {"prompt": "ab", "stop": "x"}, 422, "stop"),
    ("/generate", {"prompt": ["ab"]}, 422, "prompt"),
    ("/generate", [1, 2], 422, "body"),
    ("/predict", {"text": "a" * 30_000}, 413, "body"),                 # over --max-request-bytes
]


@pytest.mark.parametrize("path, body, status, field", BAD_REQUESTS, ids=[f"{p}-{i}" for i, (p, *_) in enumerate(BAD_REQUESTS)])
def test_a_bad_request_is_a_4xx_json_error_naming_the_field(lm, path, body, status, field):
    _, server = lm
    if isinstance(body, bytes):
        response = server.client.post(path, content=body, headers={"Content-Type": "application/json"})
    else:
        response = server.post(path, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field and error["message"], error


def test_the_server_survives_bad_requests_and_answers_json_everywhere(lm):
    _, server = lm
    chunks = (b"x" * 5000 for _ in range(10))  # no Content-Length: counted while read
    response = server.client.post("/predict", content=chunks, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["field"] == "body"
    assert server.client.get("/nowhere").json()["error"]["type"] == "not_found"
    assert server.client.get("/generate").status_code == 405
    # curl -d labels its body a form: it is read as JSON all the same
    assert server.client.post("/predict", content=b'{"text": "ab", "max_new_tokens": 2}',
                              headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 200
    assert server.client.get("/health").status_code == 200 and server.process.poll() is None


def test_images_are_read_from_base64_and_a_bad_one_fails_its_own_request(caption):
    run, server, images = caption
    encoded = [base64.b64encode(path.read_bytes()).decode() for path in images[:2]]
    expected = list(run.predict([str(path) for path in images[:2]]))
    assert server.post("/caption", {"images": encoded}).json() == {"outputs": expected}
    assert server.post("/predict", {"image": "data:image/png;base64," + encoded[0]}).json() == {"output": expected[0]}
    streamed = server.post("/generate", {"image": encoded[1], "stream": True, "temperature": 0})
    assert events(streamed)[-1] == ("done", {"text": expected[1]})
    not_an_image = base64.b64encode(b"hello, world").decode()
    truncated = base64.b64encode(images[0].read_bytes()[:60]).decode()  # a PNG header, then nothing to decode
    for body, field in [({"image": not_an_image}, "image"), ({"image": "%%%"}, "image"),
                        ({"images": [encoded[0], truncated]}, "images[1]"), ({"text": "ab"}, "text")]:
        response = server.post("/predict", body)
        assert response.status_code == 422 and response.json()["error"]["field"] == field, response.text
    assert server.post("/predict", {"images": [encoded[0]]}).json() == {"outputs": expected[:1]}


def test_a_run_that_does_not_write_text_has_no_generate(tiny_runs):
    """Served in-process (the app over a loaded run, with FastAPI's test client)."""
    from fastapi.testclient import TestClient

    from seqtasks.serving.app import create_app
    from seqtasks.serving.settings import ServeSettings

    run, _ = tiny_runs("classify")
    with TestClient(create_app(run, ServeSettings(max_batch=4))) as client:
        texts = ["a good film", "a dull film", "film"]
        assert client.post("/predict", json={"texts": texts, "top_labels": 2}).json() == \
            {"outputs": list(run.predict(texts, top_labels=2))}
        assert client.post("/predict", json={"text": "a", "top_labels": 0}).json()["error"]["field"] == "top_labels"
        assert client.post("/generate", json={"prompt": "a"}).status_code == 404
        assert client.get("/info").json()["generative"] is False


def test_sigterm_lets_the_request_in_flight_finish_then_stops(lm):
    """Last in the module: it stops the lm server. The request is in flight when SIGTERM comes (half
    of its body sent); the rest of it is sent after, and it is answered."""
    run, server = lm
    body = json.dumps({"text": "ab", "max_new_tokens": 5}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert server.process.poll() is None, "the server stopped with a request in flight"
        connection.sendall(body[10:])
        response = b""
        while chunk := connection.recv(65536):
            response += chunk
    head, _, answer = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response
    assert json.loads(answer) == {"output": next(run.predict(["ab"], max_new_tokens=5))}
    server.process.wait(30)
    log = server.stop()
    assert "Finished server process" in log and "Traceback" not in log, log[-2000:]
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "/health", timeout=5)
