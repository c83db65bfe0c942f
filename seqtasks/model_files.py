"""Loading a run's model file: checked before Keras reads it, then loaded in safe mode.

A run folder is data, never code: a model file holding a Lambda layer or a class that is neither Keras'
own nor seqtasks' is refused in one line without running anything. This module sits above the models
(it imports seqtasks.serializables, which registers them all); seqtasks.runs below it knows the folder.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seqtasks.errors import UserError
from seqtasks.files import check_input_file

# Layers that carry Python code (a Lambda's function, a wrapped torch/JAX module): never loaded.
CODE_CLASSES = {"Lambda", "__lambda__", "TorchModuleWrapper", "JaxLayer", "FlaxLayer"}
CODE_FIX = ("seqtasks never loads code from a run folder: use a run made by seqtasks, or train one with "
            "`seqtasks train`")


def load_model(path: str | Path, compile: bool = False):
    """The Keras model saved at `path` (a run's model.keras or checkpoints/last.keras), in safe mode.

    Before Keras reads it, the file is checked: a readable .keras archive whose every class is Keras'
    own or registered by seqtasks. A Lambda layer or a foreign class is refused without running
    anything; every other failure to load (a file cut short, a damaged archive) is one UserError.
    """
    import zipfile

    import seqtasks.serializables  # noqa: F401  (first: Keras then knows seqtasks' classes by their names)
    import keras

    path = check_input_file(path, "model")
    where = str(path)
    damaged = (f"the model file is damaged or was not written by seqtasks; if {path.name} is model.keras, "
               "`seqtasks resume` or a new `seqtasks train` writes it again")
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
        reason = "not a complete .keras archive" if isinstance(error, zipfile.BadZipFile) else f"{error}"
        raise UserError(f"cannot load the model file: {reason}", where, damaged) from None
    refused = _refused_class(config)
    if refused:
        raise UserError(f"the model file holds {refused}", where, CODE_FIX)
    from seqtasks.saved_layout import load_saved_model

    try:
        return load_saved_model(path, compile=compile)  # also a file saved before a model's layout changed
    except UserError:
        raise
    except Exception as error:  # whatever Keras or h5py raise for a damaged file: one line (--debug: all)
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if "safe_mode" in first_line:
            raise UserError("the model file holds code that Keras' safe mode refuses", where, CODE_FIX) from error
        raise UserError(f"cannot load the model file: {first_line[:200]}", where, damaged) from error


def _refused_class(config: Any) -> str | None:
    """What in a saved model's config seqtasks will not load: Python code, a class that is neither
    Keras' own nor a seqtasks one, or a model seqtasks did not make; None when all is known."""
    code = foreign = None
    pending = [config]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        name, registered, module = item.get("class_name"), item.get("registered_name"), item.get("module")
        if isinstance(name, str):
            if name in CODE_CLASSES:
                code = code or f"Python code (a {name.strip('_')} layer)"
            elif isinstance(registered, str) and ">" in registered and not registered.startswith("seqtasks>"):
                foreign = foreign or f"a layer seqtasks does not know ({registered})"
            elif isinstance(module, str) and not module.startswith(("keras", "seqtasks")):
                foreign = foreign or f"a layer seqtasks does not know ({module}.{name})"
        pending.extend(item.values())
    top = config if isinstance(config, dict) else {}
    if code or foreign:
        return code or foreign
    if not str(top.get("registered_name") or "").startswith("seqtasks>"):
        return f"a model seqtasks did not make ({top.get('registered_name') or top.get('class_name', 'unknown')})"
    return None
