"""`seqtasks serve RUN`: a trained run behind HTTP (FastAPI on uvicorn, the `serve` extra).

    settings   ServeSettings: host, port, batching window and size, request bounds (no FastAPI: the
               CLI builds its flags from it)
    batcher    RequestBatcher: concurrent requests become batches on one model thread
    schemas    the request bodies of a run, made from its task's predict options and the
               generation options, each field typed and bounded
    app        create_app(run, settings) -> FastAPI: the endpoints, JSON errors, server-sent events
    page       the page at / to try the model in a browser
    server     serve(path, settings): load, warm up, run uvicorn until SIGTERM

Importing this package imports neither FastAPI nor TensorFlow; `app` and `server` import FastAPI.
"""
