"""The request bodies of a served run, as pydantic models: every field typed and bounded, unknown
fields refused, so a bad request is a 422 naming its field before any model work.

/predict takes the inputs (`text` or `texts`; `image` or `images`, base64, for a task whose inputs
are images) and the keyword options of the task's `predict`, read from its signature (the same
options as `seqtasks predict`). /generate takes one `prompt` (or `image`), `stop` strings, `stream`,
and the generation options of `seqtasks sample` (decoding.generation_options(): GenerationConfig's
fields). Numbers carry the ranges GenerationConfig checks, and the server's bounds (ServeSettings):
the most new tokens, the widest beam.
"""
from __future__ import annotations

import base64
import binascii
import inspect
import typing
from typing import Annotated, Any, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, create_model

from seqtasks import decoding
from seqtasks.serving.settings import ServeSettings

# predict options a request may not set, and why
WITHHELD = {"plot": "it writes a file on the server", "top_k": "the deprecated name of top_labels",
            "pretokenized": "its inputs are the lines of one CoNLL document, not separate inputs",
            "xla": "the server decides how decoding compiles"}
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")
MAX_STOP_STRINGS, MAX_STOP_CHARS = 8, 100


def _bounds(name: str, kind: type, limits: ServeSettings) -> dict[str, Any]:
    """The range of a numeric option (GenerationConfig's checks, and the server's own bounds)."""
    widths = dict(ge=1, le=limits.max_beam)
    tokens = dict(ge=0, le=limits.max_new_tokens)
    known = {"max_new_tokens": tokens, "min_new_tokens": tokens, "temperature": dict(ge=0, le=100),
             "top_k": dict(ge=0, le=1_000_000), "top_p": dict(gt=0, le=1), "repetition_penalty": dict(gt=0, le=100),
             "no_repeat_ngram_size": dict(ge=0, le=100), "length_penalty": dict(ge=-10, le=10),
             "beam_width": widths, "beam": widths, "n_best": widths, "num_return_sequences": widths,
             "seed": dict(ge=0, le=2**31 - 1), "top_labels": dict(ge=1, le=1000)}
    found = known.get(name, dict(ge=0, le=1_000_000) if kind is int else dict(ge=-1e6, le=1e6))
    return {**found, "allow_inf_nan": False} if kind is float else found


def _option_field(name: str, kind: type, limits: ServeSettings, description: str = "") -> tuple[Any, Any]:
    if kind is bool:
        return Optional[StrictBool], Field(None, description=description)
    if kind in (int, float):
        return Optional[kind], Field(None, description=description, **_bounds(name, kind, limits))
    return Optional[str], Field(None, description=description, max_length=limits.max_text_chars)


def predict_options(task) -> dict[str, type]:
    """The keyword options of task.predict a request may set -> their type (int, float, bool, str)."""
    from seqtasks.config import setting_type

    hints = typing.get_type_hints(task.predict)
    parameters = list(inspect.signature(task.predict).parameters.values())[2:]  # after run, inputs
    return {p.name: setting_type(hints.get(p.name, str)) for p in parameters
            if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.name not in WITHHELD}


def generation_fields() -> list[decoding.GenerationOption]:
    return [row for row in decoding.generation_options() if row.field not in WITHHELD]


def decoded_image(value: str) -> bytes:
    """base64 (or a data: URL) -> the bytes of a JPEG, PNG, GIF or BMP file; anything else is refused."""
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64 (send the image file's bytes base64-encoded, or a data: URL)") from None
    if not data.startswith(IMAGE_SIGNATURES):
        raise ValueError("not a JPEG, PNG, GIF or BMP image")
    return data


def _inputs(limits: ServeSettings, images: bool, many: bool) -> dict[str, tuple[Any, Any]]:
    if images:
        one = Annotated[str, AfterValidator(decoded_image)]
        what, name = "an image file, base64-encoded (or a data: URL)", "image"
        bound: dict[str, Any] = {}
    else:
        one = Annotated[str, Field(max_length=limits.max_text_chars)]
        what, name = f"a text of at most {limits.max_text_chars} characters", "text"
        bound = {"max_length": limits.max_text_chars}
    fields: dict[str, tuple[Any, Any]] = {name: (Optional[str if not images else one], Field(None, description=what, **bound))}
    if many:
        fields[name + "s"] = (Optional[list[one]], Field(None, min_length=1, max_length=limits.max_inputs,
                                                         description=f"up to {limits.max_inputs} inputs, each {what}"))
    return fields


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def predict_request(task, limits: ServeSettings, images: bool) -> type[BaseModel]:
    """{text | texts (image | images), the task's predict options}."""
    options = {name: _option_field(name, kind, limits) for name, kind in predict_options(task).items()}
    return create_model("PredictRequest", __base__=_Body, **_inputs(limits, images, many=True), **options)


def generate_request(limits: ServeSettings, images: bool) -> type[BaseModel]:
    """{prompt (image), stop, stream, generation options}."""
    inputs = _inputs(limits, images, many=False)
    if not images:
        inputs = {"prompt": (str, Field("", max_length=limits.max_text_chars,
                                        description="the text to continue, complete or translate"))}
    stop = (list[Annotated[str, Field(min_length=1, max_length=MAX_STOP_CHARS)]],
            Field([], max_length=MAX_STOP_STRINGS, description="the text ends before the first of these"))
    stream = (StrictBool, Field(False, description="send the text piece by piece as server-sent events"))
    options = {row.field: _option_field(row.field, row.type, limits, row.help) for row in generation_fields()}
    return create_model("GenerateRequest", __base__=_Body, **inputs, stop=stop, stream=stream, **options)


def given(body: BaseModel, exclude: set[str]) -> dict[str, Any]:
    """The options a request set (None: not given, the task's default applies)."""
    return {k: v for k, v in body.model_dump().items() if v is not None and k not in exclude}
