"""Export a run: a SavedModel (or a TFLite file) that takes strings and needs no seqtasks to run.

    export_run(run, out, format="savedmodel"|"tflite") -> the folder written

The task gives the graph (`task.serving_module(run)`, the Exportable protocol of tasks/base.py): a
tf.Module with the tokenizer inside (seqtasks.graph_text) and `signatures()`, the functions to save
under their signature names. The folder holds

    saved_model.pb, variables/   the SavedModel: tf.saved_model.load(DIR).signatures[NAME](...)
    model.tflite                 with --format tflite: the serving_default signature, TFLite builtins
                                 plus the TensorFlow ops it lacks (Flex, linked into tf.lite.Interpreter)
    serving.json                 the task, the signatures with their inputs and outputs, and whether
                                 tensorflow-text's SentencePiece ops must be loaded first

It is written under a temporary name and renamed, so a folder that exists is complete.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from seqtasks.errors import UserError
from seqtasks.graph_text import GraphTokenizer

FORMATS = ("savedmodel", "tflite")
INFO_FILE = "serving.json"
TFLITE_FILE = "model.tflite"
# why a TFLite file of a graph that reads strings needs more than TFLite's builtin kernels
TFLITE_NOTE = ("model.tflite: the serving_default signature; its string ops (unicode decoding, regexes, ragged "
               "tensors) run as select TensorFlow ops, so the interpreter needs the Flex delegate "
               "(tensorflow-lite-select-tf-ops on Android, or a TensorFlow Lite build with it; the tensorflow pip "
               "package's tf.lite.Interpreter reads the file and its signatures but does not link Flex)")


def _uses_sentencepiece(module) -> bool:
    return any(isinstance(m, GraphTokenizer) and m.uses_tensorflow_text for m in module.submodules)


def _describe(signatures: dict[str, Any]) -> dict[str, Any]:
    described = {}
    for name, function in signatures.items():
        concrete = function.get_concrete_function()
        inputs = {spec.name: {"dtype": spec.dtype.name, "shape": spec.shape.as_list()}
                  for spec in concrete.structured_input_signature[0]}
        outputs = {key: {"dtype": spec.dtype.name, "shape": spec.shape.as_list()}
                   for key, spec in concrete.structured_outputs.items()}
        described[name] = {"inputs": inputs, "outputs": outputs}
    return described


def export_run(run, out: str | Path, format: str = "savedmodel") -> Path:
    """Write the run's serving graph to `out` (see the module docstring); `out` must not exist yet."""
    import tensorflow as tf

    if format not in FORMATS:
        raise UserError(f"unknown export format {format!r}", fix=f"use one of: {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists():
        raise UserError("the export folder already exists", str(out), "give --out a new folder, or remove this one")
    module = run.task.serving_module(run)
    signatures = module.signatures()
    sentencepiece = _uses_sentencepiece(module)
    info = {"task": run.task.name, "run": str(run.path), "format": format, "signatures": _describe(signatures),
            "tensorflow": tf.__version__, "needs_tensorflow_text": sentencepiece,
            "load": ("import tensorflow_text  # registers the SentencePiece ops; then " if sentencepiece else "")
            + "tf.saved_model.load(DIR).signatures['serving_default'](...)"}
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        if format == "tflite":
            if sentencepiece:
                raise UserError("TFLite cannot run this run's SentencePiece tokenizer (tensorflow-text's ops are "
                                "neither TFLite builtins nor TensorFlow ops)", str(run.path),
                                "export --format savedmodel, or train with --tokenizer word")
            (tmp / TFLITE_FILE).write_bytes(_tflite(tmp))
            info["tflite"] = TFLITE_NOTE
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _tflite(saved_model: Path) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    try:
        return converter.convert()
    except Exception as error:  # the converter's own message names the op
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"TFLite cannot convert this graph ({first[:300]})",
                        fix="export --format savedmodel") from None
