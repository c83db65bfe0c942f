"""Writers of `torch.save` files without torch, for the tests of seqtasks.torch_weights and backbone_weights.

torch pickles a tensor as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
hooks) with the storage a persistent id ('storage', torch.FloatStorage, key, 'cpu', numel[, view]).
These writers emit the same opcodes from numpy arrays: a Tensor is (storage key, its flat elements,
offset, size, stride), so views sharing a storage can be written too.
"""
from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_NAMES = {np.dtype("float32"): "FloatStorage", np.dtype("float64"): "DoubleStorage",
                 np.dtype("float16"): "HalfStorage", np.dtype("int64"): "LongStorage",
                 np.dtype("int32"): "IntStorage", np.dtype("uint8"): "ByteStorage", np.dtype("bool"): "BoolStorage"}


class Tensor:
    def __init__(self, key: str, elements: np.ndarray, offset: int, size: tuple, stride: tuple):
        self.key, self.elements, self.offset, self.size, self.stride = key, elements, offset, size, stride

    @classmethod
    def of(cls, key: str, array: np.ndarray) -> "Tensor":
        array = np.array(array, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        stride = tuple(s // array.itemsize for s in array.strides)
        return cls(key, array.reshape(-1), 0, array.shape, stride)


def _global(module: str, name: str) -> type:
    """A class that pickles as the global module.name (which need not be importable here)."""
    return type(name, (), {"torch_ref": (module, name)})


REBUILD = _global("torch._utils", "_rebuild_tensor_v2")
STORAGE_TYPES = {dtype: _global("torch", name) for dtype, name in STORAGE_NAMES.items()}


class StorageRef:
    """A tensor's storage inside the pickle: written as a persistent id, its elements after (or beside) it."""

    def __init__(self, tensor: Tensor):
        self.tensor = tensor


class TorchPickler(pickle._Pickler):
    """Pickles Tensors as torch does; `legacy` picks the persistent id of the pre-zip format."""

    def __init__(self, file, legacy: bool):
        super().__init__(file, protocol=2)
        self.legacy, self.storages = legacy, OrderedDict()

    def save_global(self, obj, name=None):
        ref = getattr(obj, "torch_ref", None)
        if ref is None:
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + f"{ref[0]}\n{ref[1]}\n".encode())
        self.memoize(obj)

    def reducer_override(self, obj):
        if isinstance(obj, Tensor):
            return REBUILD, (StorageRef(obj), obj.offset, tuple(obj.size), tuple(obj.stride), False, OrderedDict())
        return NotImplemented

    def persistent_id(self, obj):
        if not isinstance(obj, StorageRef):
            return None
        tensor = obj.tensor
        self.storages[tensor.key] = tensor.elements
        base = ("storage", STORAGE_TYPES[tensor.elements.dtype], tensor.key, "cpu", len(tensor.elements))
        return base + (None,) if self.legacy else base


def write_legacy(path, contents) -> None:
    """contents (nested dicts/lists of Tensor or np.ndarray) as a pre-zip torch.save file."""
    contents = _tensors(contents)
    with open(path, "wb") as handle:
        for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True,
                                            "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(header, handle, protocol=2)
        pickler = TorchPickler(handle, legacy=True)
        pickler.dump(contents)
        pickle.dump(list(pickler.storages), handle, protocol=2)
        for elements in pickler.storages.values():
            handle.write(struct.pack("<q", len(elements)))
            handle.write(elements.astype(elements.dtype.newbyteorder("<")).tobytes())


def write_zip(path, contents) -> None:
    """contents as a zip-format torch.save file (ARCHIVE/data.pkl + ARCHIVE/data/KEY)."""
    buffer = io.BytesIO()
    pickler = TorchPickler(buffer, legacy=False)
    pickler.dump(_tensors(contents))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        for key, elements in pickler.storages.items():
            archive.writestr(f"archive/data/{key}", elements.tobytes())
        archive.writestr("archive/version", "3\n")


def _tensors(contents):
    counter = iter(range(1 << 30))

    def convert(obj):
        if isinstance(obj, np.ndarray):
            return Tensor.of(str(next(counter)), obj)
        if isinstance(obj, dict):
            return type(obj)((key, convert(value)) for key, value in obj.items())
        if isinstance(obj, (list, tuple)):
            return type(obj)(convert(value) for value in obj)
        return obj

    return convert(contents)
