"""Tensors out of a `torch.save` file, with pickle and numpy alone: no torch, and no code run.

A `.pth` file is a pickle of (nested) dicts of tensors. A pickle may name any importable callable and
call it while loading, so `pickle.load` of a stranger's file runs the stranger's code. Here the
unpickler admits exactly what a state dict needs and refuses the rest before anything is called:

    torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...) -> a numpy array view
    torch.FloatStorage, torch.LongStorage, ...                          -> a dtype (the storage type)
    collections.OrderedDict                                             -> the dict of a state dict

Two layouts are read (torch.serialization writes both):

    legacy (torch < 1.6, `_use_new_zipfile_serialization=False`): in one stream, the pickles of the
        magic number, the protocol version and the system info, then the object pickle (a storage is
        the persistent id ('storage', type, key, device, numel, view)), then the pickle of the list of
        storage keys, then per key: int64 element count + the raw little-endian elements.
    zip (torch >= 1.6): ARCHIVE/data.pkl is the object pickle (persistent id ('storage', type, key,
        device, numel)); the elements of storage KEY are the file ARCHIVE/data/KEY.

A tensor comes back as a numpy array (C-contiguous copy of the strided view); the nesting (dict,
OrderedDict, list, tuple) is kept.
"""
from __future__ import annotations

import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from seqtasks.errors import UserError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
# torch's storage classes and their element types; bfloat16 is read as its raw uint16 and widened
STORAGE_DTYPES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2", "BFloat16Storage": "<u2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}


class StorageType:
    """What the unpickler hands back for `torch.FloatStorage` etc.: the name and the element type."""

    def __init__(self, name: str):
        self.name, self.dtype = name, np.dtype(STORAGE_DTYPES[name])


class Storage:
    """One storage: a flat array of elements, filled in once its bytes are read."""

    def __init__(self, kind: StorageType, numel: int):
        self.kind, self.numel = kind, numel
        self.elements: np.ndarray | None = None


class PendingTensor:
    """_rebuild_tensor_v2's arguments, kept until the storage's elements are known (legacy files
    store them after the object pickle)."""

    def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self) -> np.ndarray:
        flat = self.storage.elements
        if flat is None:
            raise ValueError("a tensor's storage was never read")
        needed = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride)) + 1 if all(self.size) else 0
        if self.offset < 0 or any(s < 0 for s in self.stride) or needed > len(flat):
            raise ValueError("a tensor reaches outside its storage")
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(flat[self.offset:], self.size, [s * item for s in self.stride],
                                               writeable=False) if all(self.size) else \
            np.zeros(self.size, flat.dtype)
        out = np.array(view, order="C")
        if self.storage.kind.name == "BFloat16Storage":
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    if not isinstance(storage, Storage):
        raise ValueError("a tensor built on something that is not a storage")
    return PendingTensor(storage, int(storage_offset), size, stride)


class HoldsCode(Exception):
    """The pickle names a callable beyond tensors (the reader's one refusal)."""


class TensorUnpickler(pickle.Unpickler):
    """An Unpickler that admits only the tensor rebuild function, storage types and OrderedDict."""

    def __init__(self, file, storage_bytes=None):
        super().__init__(file)
        self.storages: dict[str, Storage] = {}
        self.storage_bytes = storage_bytes  # zip files: key -> the storage's raw bytes

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        raise HoldsCode(f"{module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], StorageType)):
            raise ValueError(f"an unknown persistent id {pid!r:.80}")
        kind, key, numel = pid[1], str(pid[2]), int(pid[4])
        view = pid[5] if len(pid) > 5 else None
        if key not in self.storages:
            self.storages[key] = Storage(kind, numel)
            if self.storage_bytes is not None:
                self.storages[key].elements = np.frombuffer(self.storage_bytes(key), kind.dtype)
        root = self.storages[key]
        if view is None:
            return root
        # a view of an older torch: (view key, offset, size) into the root storage
        view_key, offset, size = view
        if view_key not in self.storages:
            self.storages[view_key] = ViewStorage(root, int(offset), int(size))
        return self.storages[view_key]


class ViewStorage(Storage):
    """A legacy storage that is a slice [offset, offset + size) of another storage."""

    def __init__(self, root: Storage, offset: int, size: int):
        super().__init__(root.kind, size)
        self.root, self.start = root, offset

    @property
    def elements(self):
        return None if self.root.elements is None else self.root.elements[self.start:self.start + self.numel]

    @elements.setter
    def elements(self, value):
        pass


def _resolve(obj):
    """The object with every PendingTensor replaced by its array."""
    if isinstance(obj, PendingTensor):
        return obj.array()
    if isinstance(obj, OrderedDict):
        return OrderedDict((key, _resolve(value)) for key, value in obj.items())
    if isinstance(obj, dict):
        return {key: _resolve(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(value) for value in obj)
    return obj


def _read_legacy(handle) -> Any:
    first = TensorUnpickler(handle).load()
    if first != LEGACY_MAGIC:
        raise ValueError("not a torch.save file (no magic number)")
    if TensorUnpickler(handle).load() != LEGACY_PROTOCOL:
        raise ValueError("an unknown torch.save protocol version")
    TensorUnpickler(handle).load()  # system info: byte order, sizes of short/int/long
    objects = TensorUnpickler(handle)
    result = objects.load()
    keys = TensorUnpickler(handle).load()
    for key in keys:
        storage = objects.storages[str(key)]
        count = struct.unpack("<q", handle.read(8))[0]
        data = handle.read(count * storage.kind.dtype.itemsize)
        if count < 0 or len(data) != count * storage.kind.dtype.itemsize:
            raise ValueError("the file ends inside a storage")
        storage.elements = np.frombuffer(data, storage.kind.dtype)
    return result


def _read_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [name for name in names if name.endswith("data.pkl") and name.count("/") == 1]
        if not pickles:
            raise ValueError("a zip file without data.pkl")
        prefix = pickles[0][:-len("data.pkl")]
        order = archive.read(prefix + "byteorder").decode() if prefix + "byteorder" in names else "little"
        if order != "little":
            raise ValueError("a big-endian torch.save file")
        with archive.open(pickles[0]) as handle:
            return TensorUnpickler(handle, lambda key: archive.read(f"{prefix}data/{key}")).load()


def read_torch_file(path: str | Path) -> Any:
    """The contents of a `torch.save` file (legacy or zip), tensors as numpy arrays.

    Raises UserError, one line, for a file that is not a torch.save file of tensors, or whose pickle
    names anything beyond tensors (code): nothing in it is called.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _resolve(_read_zip(path))
        with open(path, "rb") as handle:
            return _resolve(_read_legacy(handle))
    except HoldsCode as refused:
        raise UserError(f"this file holds code, not just tensors (its pickle calls {refused}); nothing in it "
                        "was run", str(path), "use a file of plain tensors (a state_dict saved with torch.save)") \
            from None
    except OSError as error:
        raise UserError(f"cannot read the weights file: {error.strerror or error}", str(path)) from None
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError, struct.error, KeyError, AttributeError,
            IndexError, zipfile.BadZipFile) as error:
        raise UserError(f"not a torch.save file of tensors ({error})", str(path),
                        "give a .pth file written by torch.save(model.state_dict(), ...)") from None


def state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A torch.save file's flat name -> array table: the file itself, or its "state_dict" entry."""
    contents = read_torch_file(path)
    if isinstance(contents, dict) and isinstance(contents.get("state_dict"), dict):
        contents = contents["state_dict"]
    if not isinstance(contents, dict) or not all(isinstance(v, np.ndarray) for v in contents.values()):
        raise UserError("this torch.save file is not a table of tensors (a state_dict)", str(path),
                        "save the model's state_dict(), not the model")
    return dict(contents)
