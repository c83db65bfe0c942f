"""Load model files saved before a model's parts moved into a shared layer (seqtasks.layers'
TransformerDecoder and AttentionalDecoder), without changing the files.

A .keras file keeps each layer's weights in model.weights.h5 under the attribute path that reached
the layer when it was saved (`blocks/transformer_block_1/feed_forward/expand/vars/0`), and each
layer's name on its `vars` group. Moving parts into a sublayer changes the attribute paths, not the
names a model gives its layers, so a model class lists in `renamed_parts` how the path of layer
names changed: regular expressions from old to new (`^block_(\\d+)/` -> `decoder/block_\\1/`).

`load_saved_model(path)` loads a file as Keras does. When its weights do not fit the class's current
layout, the weights file is rewritten in memory: every saved layer goes to the layer of the current
layout with the same name path after the renames (or, for a layer that did not move and has no
name of its own, the same attribute path), the optimizer state is kept as it is (the variables keep
their order), and that copy is loaded.
"""
from __future__ import annotations

import io
import json
import re
import tempfile
import zipfile
from pathlib import Path

import h5py
import keras

from seqtasks.errors import UserError

WEIGHTS = "model.weights.h5"


def load_saved_model(path: str | Path, compile: bool = False):
    """keras.saving.load_model in safe mode, for files in the current layout or an earlier one."""
    path = Path(path)
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except ValueError as error:
        if "could not be loaded" not in str(error):  # Keras' words for weights that do not fit the model
            raise
        converted = convert_to_current_layout(path)
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / path.name
        copy.write_bytes(converted)
        return keras.saving.load_model(copy, compile=compile, safe_mode=True)


def convert_to_current_layout(path: Path) -> bytes:
    """The .keras archive at `path` with its weights moved to where the current code looks for them."""
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    contents = {info.filename: data for info, data in entries}
    model = keras.saving.deserialize_keras_object(json.loads(contents["config.json"]), safe_mode=True)
    renames = getattr(type(model), "renamed_parts", {})
    with tempfile.TemporaryDirectory() as folder:
        layout_file = Path(folder) / "layout.weights.h5"
        model.save_weights(layout_file)
        with h5py.File(layout_file, "r") as layout:
            current = _weight_groups(layout)
    with h5py.File(io.BytesIO(contents[WEIGHTS]), "r") as old:
        weights = _moved(old, current, renames, str(path))
    return _archive(entries, weights)


def _weight_groups(weights: h5py.File) -> dict[str, tuple[str, list[tuple[int, ...]]]]:
    """{attribute path: (layer-name path, shapes of its variables)} of every layer that has variables."""
    groups = {}

    def visit(name, item):
        if isinstance(item, h5py.Group) and name.endswith("/vars") and len(item):
            path = name[:-len("/vars")]
            shapes = [item[str(i)].shape for i in range(len(item))]
            groups[path] = (_name_path(weights, path), shapes)

    weights.visititems(visit)
    return groups


def _name_path(weights: h5py.File, path: str) -> str:
    """"block_0/self_attention/query/": the names of the layers along an attribute path (containers,
    such as a list of layers, have none)."""
    parts = path.split("/")
    names = []
    for depth in range(1, len(parts) + 1):
        group = weights.get("/".join(parts[:depth]) + "/vars")
        if group is not None and "name" in group.attrs:
            names.append(str(group.attrs["name"]))
    return "".join(f"{name}/" for name in names)


def _moved(old: h5py.File, current: dict, renames: dict[str, str], where: str) -> bytes:
    """A weights file with each of `old`'s layers at its path in the `current` layout."""
    by_name: dict[str, str | None] = {}
    for path, (name_path, _) in current.items():
        by_name[name_path] = None if name_path in by_name else path  # an ambiguous name maps by path only
    filled: dict[str, str] = {}
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as new:
        for old_path, (name_path, shapes) in _weight_groups(old).items():
            for pattern, replacement in renames.items():
                name_path = re.sub(pattern, replacement, name_path, count=1)
            target = by_name.get(name_path) or (old_path if old_path in current else None)
            if target is None and old_path.split("/")[0] in ("optimizer", "compile_metrics", "loss"):
                target = old_path  # training state: its variables follow the model's, whose order is kept
            elif target is None or target in filled or current[target][1] != shapes:
                raise _unconvertible(where, old_path)
            filled[target] = old_path
            old.copy(old[f"{old_path}/vars"], new.require_group(target), name="vars")
        missing = sorted(set(current) - set(filled))
        if missing:
            raise _unconvertible(where, missing[0], saved=False)
    return buffer.getvalue()


def _unconvertible(where: str, path: str, saved: bool = True) -> UserError:
    what = f"its weights at {path} have no place" if saved else f"it has no weights for {path}"
    return UserError(f"this model file was saved by another version of seqtasks and {what} in this version's "
                     "model", where, "load it with the seqtasks version that trained it, or train it again")


def _archive(entries, weights: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for info, data in entries:
            archive.writestr(info, weights if info.filename == WEIGHTS else data)
    return buffer.getvalue()
