"""serve(path, settings): load a run, warm its model up, and answer HTTP on uvicorn until SIGTERM or Ctrl-C.

The model loads and runs once before the port opens, so /health answers only when a request can be
served and the first request pays no tracing. On SIGTERM uvicorn stops accepting connections, lets
the requests in flight finish (for --shutdown-timeout seconds at most), then the model thread stops.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from seqtasks.serving.settings import ServeSettings


def warm_up(run) -> None:
    """One prediction, so the functions it compiles are ready before the first request."""
    if run.task.input_kind == "image":
        import tensorflow as tf

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "gray.png"
            path.write_bytes(tf.io.encode_png(tf.fill((32, 32, 3), tf.constant(128, tf.uint8))).numpy())
            list(run.predict([str(path)]))
    else:
        list(run.predict(["a"]))


def check_address(host: str, port: int) -> None:
    """A port already taken (or an address not of this machine) is a one-line error before the model loads."""
    import socket

    from seqtasks.errors import UserError

    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        raise UserError(f"cannot listen on {host}:{port} ({error.strerror or error})", "seqtasks serve",
                        "choose another --port (or --host)") from None


def serve(path: str, settings: ServeSettings) -> None:
    import uvicorn

    from seqtasks import api
    from seqtasks.serving.app import create_app

    check_address(settings.host, settings.port)
    run = api.load(path)
    run.model  # noqa: B018  (a damaged run fails here, before the port opens)
    warm_up(run)
    app = create_app(run, settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="info", access_log=False,
                            timeout_graceful_shutdown=settings.shutdown_timeout or None, lifespan="on")
    print(f"serving {run.path} ({run.task.name}) on http://{settings.host}:{settings.port}/ "
          f"(API docs: /docs; batches of up to {settings.max_batch}, window {settings.batch_window_ms:g} ms)",
          flush=True)
    uvicorn.Server(config).run()
