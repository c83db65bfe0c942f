"""create_app(run, settings) -> the FastAPI application of one run.

    GET  /            a page to try the model (seqtasks.serving.page)
    GET  /health      {"status": "ok", ...} once the model is loaded
    GET  /info        the run (as `seqtasks info --json`), the server's bounds, endpoints, batches so far
    POST /predict     what `seqtasks predict` prints, as JSON: {"output"} for `text`, {"outputs"} for `texts`
    POST /generate    runs that write text: {"text", "texts"}, or with "stream": true server-sent events,
                      one `data: {"text": piece}` per piece as tokens are decoded, then `event: done`
    POST /NAME        the task card's `serve_route`, the same as /predict (e.g. a run that writes
                      translations answers /translate too)
    GET  /docs, /openapi.json   the OpenAPI description FastAPI writes from the request models

Dispatch is on the task contract (isinstance(task, Generative), the card's `input_kind`), never on
a task's name. Every error is JSON, {"error": {"field", "message", "type"}}: 400 for a body that is
not JSON, 413 for one over --max-request-bytes, 422 for a field that is missing, of the wrong type,
out of range or too long, or an input the task refuses (an image that does not decode); 500 for a
failure of the server's own, which the server survives.

No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations, which name
request models made inside create_app.
"""
import asyncio
import contextlib
import itertools
import json
import logging
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException

from seqtasks.errors import UserError, describe_exception
from seqtasks.generation import GeneratesText
from seqtasks.serving import page
from seqtasks.serving.batcher import RequestBatcher
from seqtasks.serving.schemas import WITHHELD, generate_request, given, predict_options, predict_request
from seqtasks.serving.settings import ServeSettings
from seqtasks.tasks.base import Generative

log = logging.getLogger("seqtasks.serve")


class RequestError(Exception):
    """A request the server refuses: status, the field at fault, what is wrong."""

    def __init__(self, status: int, field: str | None, message: str, kind: str = "invalid"):
        super().__init__(message)
        self.status, self.field, self.message, self.kind = status, field, message, kind


def error_body(field: str | None, message: str, kind: str) -> dict[str, Any]:
    return {"error": {"field": field, "message": message, "type": kind}}


def _field_name(location: tuple) -> str:
    """("body", "texts", 2) -> "texts[2]"; ("body",) -> "body"."""
    parts = [str(p) for p in location if p != "body"] or ["body"]
    name = parts[0]
    for part in parts[1:]:
        name += f"[{part}]" if part.isdigit() else f".{part}"
    return name


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is refused with 413, by its Content-Length
    before it is read, or while it is read when it comes in chunks. A POST body is read as JSON."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            response = JSONResponse(error_body("body", f"the request body is over {self.limit:,} bytes",
                                               "too_large"), status_code=413)
            return await response(scope, receive, send)
        if scope["method"] == "POST" and b"json" not in headers.get(b"content-type", b""):
            # every body here is JSON: read it as such whatever it is labelled (`curl -d` says a form)
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"content-type"]
                     + [(b"content-type", b"application/json")]}
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:  # FastAPI passes an HTTPException raised while reading on as it is
                raise HTTPException(413, f"the request body is over {self.limit:,} bytes")
            return message

        await self.app(scope, limited, send)


def create_app(run, settings: ServeSettings) -> FastAPI:
    task = run.task
    images = task.input_kind == "image"
    generative = isinstance(task, Generative)
    name = "image" if images else "text"
    batcher = RequestBatcher(settings.batch_window_ms / 1000, settings.max_batch)
    files = tempfile.TemporaryDirectory(prefix="seqtasks-serve-")  # image inputs, as the tasks read files
    alone = itertools.count()  # seeded requests batch only with themselves: the same seed, the same text
    # a request that gives no max_new_tokens gets the run's default, unless that is over the server's bound
    default_tokens = task.text_generator(run).config().max_new_tokens if isinstance(task, GeneratesText) else None
    bounded = {"max_new_tokens": settings.max_new_tokens} if (default_tokens or 0) > settings.max_new_tokens else {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()  # uvicorn has let the requests in flight finish
        files.cleanup()

    from seqtasks import __version__

    app = FastAPI(title=f"seqtasks: a {task.name} run", version=__version__, lifespan=lifespan,
                  description=f"{task.description}. Run: {run.path}. Errors are JSON: "
                              '{"error": {"field", "message", "type"}}.')
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)
    app.state.batcher = batcher

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        problems = error.errors()
        first = problems[0] if problems else {"loc": ("body",), "msg": "invalid request", "type": "invalid"}
        if first["type"] == "json_invalid":
            return JSONResponse(error_body("body", f"the body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}",
                                           "json_invalid"), status_code=400)
        body = error_body(_field_name(tuple(first["loc"])), first["msg"], first["type"])
        body["errors"] = [{"field": _field_name(tuple(p["loc"])), "message": p["msg"], "type": p["type"]}
                          for p in problems]
        return JSONResponse(body, status_code=422)

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError):
        return JSONResponse(error_body(error.field, error.message, error.kind), status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        field = "body" if error.status_code in (400, 413) else None
        kind = {400: "invalid_body", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(error.status_code, "http")
        return JSONResponse(error_body(field, str(error.detail), kind), status_code=error.status_code,
                            headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception):
        log.exception("request failed")
        return JSONResponse(error_body(None, f"the server failed: {describe_exception(error)}", "internal"),
                            status_code=500)

    def as_files(items: list[Any]) -> list[str]:
        """Image bytes -> paths of temporary files (the tasks read image files); text stays text."""
        if not images:
            return items
        paths = []
        for data in items:
            path = Path(files.name) / uuid.uuid4().hex
            path.write_bytes(data)
            paths.append(str(path))
        return paths

    def removed(paths: list[str]) -> None:
        if images:
            for path in paths:
                Path(path).unlink(missing_ok=True)

    def on_files(function: Callable[[list[Any]], list[Any]]) -> Callable[[list[Any]], list[Any]]:
        def run_batch(items):
            paths = as_files(items)
            try:
                return function(paths)
            finally:
                removed(paths)
        return run_batch

    async def answers(key: tuple, function, inputs: list[Any], fields: list[str]) -> list[Any]:
        """Each input through the batcher; an input the task refuses is a 422 naming its field."""
        outputs = await asyncio.gather(*(batcher.submit(key, on_files(function), item) for item in inputs),
                                       return_exceptions=True)
        for field, output in zip(fields, outputs):
            if isinstance(output, UserError):
                raise RequestError(422, field, output.message, "refused")
            if isinstance(output, BaseException):
                raise output
        return outputs

    def batch_key(kind: str, options: dict[str, Any]) -> tuple:
        key = (kind, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items())))
        return key + ((next(alone),) if options.get("seed") is not None else ())

    PredictRequest = predict_request(task, settings, images)

    async def predict(body: PredictRequest):
        one, many = getattr(body, name), getattr(body, name + "s")
        if (one is None) == (many is None):
            raise RequestError(422, name, f"give `{name}` (one input) or `{name}s` (a list), not both or neither",
                               "missing" if one is None else "invalid")
        inputs = [one] if many is None else many
        fields = [name] if many is None else [f"{name}s[{i}]" for i in range(len(inputs))]
        options = given(body, {name, name + "s"})
        if "max_new_tokens" in predict_options(task):
            options = {**bounded, **options}
        outputs = await answers(batch_key("predict", options), lambda items: list(run.predict(items, **options)),
                                inputs, fields)
        return {"output": outputs[0]} if many is None else {"outputs": outputs}

    app.post("/predict", summary=f"What `seqtasks predict` gives: {task.description}")(predict)
    route = task.serve_route
    if route:
        app.post(f"/{route}", summary="The same as /predict")(predict)

    if generative:
        GenerateRequest = generate_request(settings, images)

        async def generate(body: GenerateRequest):
            prompt = getattr(body, name) if images else body.prompt
            if prompt is None:
                raise RequestError(422, name, f"`{name}` is required", "missing")
            options = {**bounded, **given(body, {name, "prompt", "stream", "stop"})}
            stop = tuple(body.stop)
            if body.stream:
                return await streamed(prompt, stop, options)
            outputs = await answers(batch_key("generate", {**options, "stop": stop}),
                                    lambda prompts: task.generate_batch(run, prompts, stop=stop, **options),
                                    [prompt], [name if images else "prompt"])
            return {"text": outputs[0][0], "texts": outputs[0]}

        async def streamed(prompt, stop: tuple, options: dict[str, Any]):
            for option, single in (("beam_width", 1), ("num_return_sequences", 1)):
                if options.get(option, single) != single:
                    raise RequestError(422, option, f"a stream is one greedy or sampled text: {option} must be "
                                                    f"{single} with \"stream\": true", "invalid")

            def start() -> Iterator[str]:
                paths = as_files([prompt])
                try:
                    return iter(task.stream(run, paths[0], stop=stop, **options))  # bad settings fail here
                finally:
                    removed(paths)

            try:
                pieces = await batcher.call(start)
            except UserError as error:
                raise RequestError(422, name if images else "prompt", error.message, "refused") from None
            return StreamingResponse(events(pieces), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

        async def events(pieces: Iterator[str]):
            text = []
            try:
                while (piece := await batcher.call(next, pieces, None)) is not None:
                    text.append(piece)
                    yield f"data: {json.dumps({'text': piece}, ensure_ascii=False)}\n\n"
                yield f"event: done\ndata: {json.dumps({'text': ''.join(text)}, ensure_ascii=False)}\n\n"
            except Exception as error:  # the response has begun: the error is the stream's last event
                log.exception("stream failed")
                message = error.message if isinstance(error, UserError) else describe_exception(error)
                yield f"event: error\ndata: {json.dumps(error_body(None, message, 'stream'))}\n\n"
            finally:
                close = getattr(pieces, "close", None)
                if close:
                    close()

        app.post("/generate", summary="Generated text (`seqtasks sample`); \"stream\": true for server-sent events",
                 responses={200: {"content": {"text/event-stream": {}}}})(generate)

    def endpoints() -> list[str]:
        return ["/predict", *([f"/{route}"] if route else []), *(["/generate"] if generative else []),
                "/health", "/info", "/docs", "/openapi.json", "/"]

    @app.get("/health", summary="ok once the model is loaded")
    async def health():
        return {"status": "ok", "task": task.name, "run": str(run.path)}

    @app.get("/info", summary="The run (as `seqtasks info --json`), the server's bounds and batching")
    async def info():
        return {"run": run.info(), "task": task.name, "description": task.description, "input": name,
                "generative": generative, "continues_prompt": generative and task.continues_prompt,
                "endpoints": endpoints(), "predict_options": sorted(predict_options(task)),
                "default_max_new_tokens": min(default_tokens, settings.max_new_tokens) if default_tokens else None,
                "withheld_options": WITHHELD, "settings": dict(vars(settings)),
                "batches": {"count": batcher.batches, "inputs": batcher.inputs,
                            "mean_size": round(batcher.inputs / batcher.batches, 2) if batcher.batches else None}}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return page.render(f"{task.name} run", images, generative, generative and task.continues_prompt,
                           f"{task.description}; {run.path}", tokens=min(100, settings.max_new_tokens))

    return app
