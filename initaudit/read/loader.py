"""Open an ONNX file safely: parse the graph, never pull external data in, never write.

External data is located and validated here (relative path inside the model's
folder, no ``..``, no symlink or hard link, byte range inside the file and equal
to what the tensor's type and shape need: reference §8.9) and then streamed by
``tensors.FilePayload``.
"""
from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto, numpy_helper

from initaudit.errors import InitauditError
from initaudit.read.filebuffer import FileBuffer
from initaudit.read.protoscan import Stripped, strip_payloads
from initaudit.read.tensors import (
    NUMERIC_TYPES,
    FilePayload,
    MemoryPayload,
    TensorSource,
    dtype_name,
    packed_bits,
    storage_nbytes,
    typed_field_bytes,
    typed_field_source,
)


@dataclass
class LoadedModel:
    path: Path
    proto: onnx.ModelProto
    self_fd: int | None = None           # the model file, for payloads left in it
    self_marker: str | None = None       # external-data location meaning "the model file itself"
    _fds: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def folder(self) -> Path:
        return self.path.resolve().parent

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self.self_fd is not None:
            os.close(self.self_fd)
            self.self_fd = None

    def __enter__(self) -> LoadedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def source(self, tensor: TensorProto, name: str | None = None, constant: bool = False) -> TensorSource:
        """Where the values of ``tensor`` are, checked but not read."""
        name = name or tensor.name
        shape = tuple(int(d) for d in tensor.dims)
        if any(d < 0 for d in shape):
            raise InitauditError(f"tensor {name!r} has a negative dimension {list(shape)}")
        if tensor.data_type not in NUMERIC_TYPES:
            raise InitauditError(f"tensor {name!r} has data type {tensor.data_type}, not a numeric ONNX type")
        location = "constant" if constant else "inline"
        if tensor.data_location == TensorProto.EXTERNAL:
            in_model = self.self_marker is not None and any(
                e.key == "location" and e.value == self.self_marker for e in tensor.external_data)
            return TensorSource(name, tensor.data_type, shape, self._external_payload(tensor, name, shape),
                                location=location if in_model else "external")
        if tensor.HasField("raw_data"):
            expected = storage_nbytes(tensor.data_type, int(np.prod(shape, dtype=np.int64)))
            if len(tensor.raw_data) != expected:
                raise InitauditError(
                    f"tensor {name!r} holds {len(tensor.raw_data)} bytes, its shape {list(shape)} needs {expected}")
            return TensorSource(name, tensor.data_type, shape, MemoryPayload(tensor.raw_data), location=location)
        _check_typed_fields(tensor, name, shape)
        return typed_field_source(tensor, name, location)

    def load_array(self, tensor: TensorProto) -> np.ndarray:
        """A small tensor (scale, zero point, shape) in memory."""
        return self.source(tensor).to_array()

    def _external_payload(self, tensor: TensorProto, name: str, shape: tuple[int, ...]) -> FilePayload:
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        if self.self_marker is not None and self.self_fd is not None and location == self.self_marker:
            fd, location = self.self_fd, self.path.name
        else:
            fd = self._open_inside_folder(location, name)
        size = os.fstat(fd).st_size
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else None
        except ValueError:
            raise InitauditError(f"tensor {name!r}: external data offset/length are not integers") from None
        needed = storage_nbytes(tensor.data_type, int(np.prod(shape, dtype=np.int64)))
        if length is None:
            length = needed
        if offset < 0 or length != needed:
            raise InitauditError(
                f"tensor {name!r}: external data length {length} at offset {offset} does not match the "
                f"{needed} bytes its shape {list(shape)} needs")
        if offset + length > size:
            if lfs_pointer(fd):
                raise InitauditError(f"tensor {name!r}: external data {location!r} {LFS_HINT}")
            raise InitauditError(
                f"tensor {name!r}: external data range {offset}..{offset + length} is past the end of "
                f"{location!r} ({size} bytes)")
        return FilePayload(fd, offset, length)

    def _open_inside_folder(self, location: str, name: str) -> int:
        if location in self._fds:
            return self._fds[location]
        parts = PurePath(location).parts
        if not location or "\x00" in location or os.path.isabs(location) or ".." in parts:
            raise InitauditError(f"tensor {name!r}: external data location {location!r} is not a plain "
                                 "relative path inside the model's folder")
        folder = os.path.realpath(self.folder)
        candidate = os.path.join(folder, location)
        real = os.path.realpath(candidate)
        if os.path.commonpath([folder, real]) != folder or real != os.path.normpath(candidate):
            raise InitauditError(f"tensor {name!r}: external data {location!r} is a symlink or leaves the "
                                 "model's folder; refusing to read it (for a symlinked cache such as Hugging "
                                 "Face's, copy the folder with `cp -rL` first)")
        try:
            before = os.lstat(real)
        except FileNotFoundError:
            raise InitauditError(f"tensor {name!r}: external data file {location!r} not found next to the model") from None
        except OSError as exc:
            raise InitauditError(f"tensor {name!r}: cannot open external data {location!r}: {exc.strerror}") from None
        if not stat.S_ISREG(before.st_mode):
            raise InitauditError(f"tensor {name!r}: external data {location!r} is {file_kind(before.st_mode)}, "
                                 "not a regular file; refusing to read it")
        fd = _open_regular(real, lambda exc: InitauditError(
            f"tensor {name!r}: cannot open external data {location!r}: {exc.strerror}"),
            InitauditError(f"tensor {name!r}: external data {location!r} changed while being opened"),
            nofollow=True)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
            os.close(fd)
            what = "is not a regular file" if not stat.S_ISREG(info.st_mode) else "has several hard links"
            raise InitauditError(f"tensor {name!r}: external data {location!r} {what}; refusing to read it "
                                 "(copy it to a file of its own first)")
        self._fds[location] = fd
        return fd


def file_kind(mode: int) -> str:
    """What a path that is not a regular file is, for the one-line error."""
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symlink"))
    return next((text for test, text in kinds if test(mode)), "not a regular file")


def _open_regular(path: str, on_error: Callable[[OSError], InitauditError], on_changed: InitauditError,
                  nofollow: bool = False) -> int:
    """Open a path already seen (by stat) to be a regular file, without ever blocking.

    ``O_NONBLOCK`` makes the open return at once should the path have been swapped for a FIFO
    between the stat and the open; the fstat after it then refuses what was opened.
    """
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    if nofollow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise on_error(exc) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise on_changed
    return fd


_TYPED_FIELD: dict[int, str] = {
    TensorProto.FLOAT: "float_data", TensorProto.COMPLEX64: "float_data", TensorProto.DOUBLE: "double_data",
    TensorProto.COMPLEX128: "double_data", TensorProto.INT64: "int64_data", TensorProto.UINT32: "uint64_data",
    TensorProto.UINT64: "uint64_data", TensorProto.STRING: "string_data",
}


def _check_typed_fields(tensor: TensorProto, name: str, shape: tuple[int, ...]) -> None:
    """Values in typed fields must be as many as the shape says (never trust dims alone)."""
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    field_name = _TYPED_FIELD.get(tensor.data_type, "int32_data")
    held = len(getattr(tensor, field_name))
    if tensor.data_type in (TensorProto.COMPLEX64, TensorProto.COMPLEX128):
        held //= 2
    if packed_bits(tensor.data_type):  # one int32 per byte of packed 4-bit / 2-bit elements
        count = storage_nbytes(tensor.data_type, count)
    if held != count:
        raise InitauditError(f"tensor {name!r} holds {held} values, its shape {list(shape)} needs {count}")


def load_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Parse ``path`` without its external data, and without copying large inline payloads.

    Any problem is an InitauditError with a one-line message.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InitauditError(f"{path}: no such file") from None
    except OSError as exc:
        raise InitauditError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise InitauditError(f"{path}: {file_kind(info.st_mode)}, not an ONNX file")
    fd = _open_regular(str(path), lambda exc: InitauditError(f"{path}: cannot read the file ({exc.strerror or exc})"),
                       InitauditError(f"{path}: changed into a special file while being opened"))
    try:
        proto, stripped = _parse(path, fd)
    except BaseException:
        os.close(fd)
        raise
    if proto.ir_version <= 0 or not proto.HasField("graph") or not proto.opset_import:
        os.close(fd)
        raise InitauditError(f"{path}: not an ONNX model (no IR version, graph or opset), or the file is truncated")
    bad = _undecodable_name(proto)
    if bad is not None:
        os.close(fd)
        raise InitauditError(f"{path}: not a readable ONNX model (a name is not valid UTF-8: {bad!r})")
    try:
        _densify_sparse(proto.graph)
    except InitauditError as exc:
        os.close(fd)
        raise InitauditError(f"{path}: {exc}") from None
    return LoadedModel(path, proto, fd, stripped.marker if stripped else None)


#: A sparse initializer is made dense (in memory) up to this many values.
SPARSE_MAX_VALUES = 1 << 26


def _densify_sparse(graph: onnx.GraphProto) -> None:
    """Turn sparse initializers into ordinary ones in the parsed copy, so every weight is traced alike."""
    for node in graph.node:
        for attr in node.attribute:
            for body in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _densify_sparse(body)
    for sparse in graph.sparse_initializer:
        name, dims = sparse.values.name, [int(d) for d in sparse.dims]
        count = int(np.prod(dims, dtype=np.int64))
        if count > SPARSE_MAX_VALUES or sparse.values.data_location == TensorProto.EXTERNAL:
            raise InitauditError(f"sparse initializer {name!r} of {count} values is too large or external")
        data_type = sparse.values.data_type
        if data_type not in NUMERIC_TYPES or packed_bits(data_type):
            raise InitauditError(f"sparse initializer {name!r} of type {dtype_name(data_type)} is not supported")
        try:
            # Scattered as whole elements of bytes, so the type stays what it was whatever onnx maps it to.
            element = np.dtype(f"V{storage_nbytes(data_type, 1)}")
            raw = sparse.values.raw_data if sparse.values.HasField("raw_data") else typed_field_bytes(sparse.values)
            values = np.frombuffer(raw, element, int(np.prod(sparse.values.dims, dtype=np.int64)))
            indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
            if indices.ndim == 2:  # one row of coordinates per value
                indices = np.ravel_multi_index(tuple(indices.T), dims)
            dense = np.zeros(count, element)
            dense[indices.ravel()] = values
        except (ValueError, IndexError, TypeError) as exc:
            raise InitauditError(f"sparse initializer {name!r} is malformed ({exc})") from None
        graph.initializer.append(TensorProto(name=name, data_type=data_type, dims=dims, raw_data=dense.tobytes()))
    del graph.sparse_initializer[:]


def _names(model: onnx.ModelProto):
    """Every name and op type of every graph, body and function of the model."""
    yield from (model.producer_name, model.producer_version, model.domain)
    yield from (opset.domain for opset in model.opset_import)
    yield from (text for function in model.functions for text in (function.name, function.domain, *function.input))
    graphs = [model.graph]
    nodes = [node for function in model.functions for node in function.node]
    while graphs or nodes:
        if graphs:
            graph = graphs.pop()
            yield graph.name
            yield from (tensor.name for tensor in graph.initializer)
            yield from (value.name for value in graph.input)
            nodes.extend(graph.node)
            continue
        node = nodes.pop()
        yield from (node.op_type, node.name, node.domain, *node.input, *node.output)
        for attr in node.attribute:
            yield attr.name
            if attr.HasField("g"):
                graphs.append(attr.g)
            graphs.extend(attr.graphs)


def _undecodable_name(model: onnx.ModelProto) -> bytes | None:
    """protobuf hands back invalid UTF-8 in string fields as bytes: such a file is corrupt."""
    return next((name for name in _names(model) if isinstance(name, bytes)), None)


#: Files up to this size are walked through ``mmap`` (fastest); larger ones with ``pread`` (bounded memory).
MMAP_MAX_BYTES = 32 << 20


#: The first line of a Git LFS pointer file (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md).
LFS_POINTER = b"version https://git-lfs.github.com/spec/"
LFS_HINT = "is a Git LFS pointer, not the file itself: fetch the object (git lfs pull)"


def lfs_pointer(fd: int) -> bool:
    """Whether an open file is a Git LFS pointer (a checkout without ``git lfs pull``)."""
    return os.pread(fd, len(LFS_POINTER), 0) == LFS_POINTER


def _parse(path: Path, fd: int) -> tuple[onnx.ModelProto, Stripped | None]:
    size = os.fstat(fd).st_size
    if size == 0:
        return onnx.ModelProto(), None
    if lfs_pointer(fd):
        raise InitauditError(f"{path}: this {LFS_HINT}")
    try:
        if size > MMAP_MAX_BYTES:  # mapped, a large file's walked places would count in the RSS
            stripped = strip_payloads(FileBuffer(fd, size))
        else:
            with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped:
                stripped = strip_payloads(mapped)
    except InitauditError as exc:
        raise InitauditError(f"{path}: not a readable ONNX model ({exc})") from None
    try:
        return onnx.load_model_from_string(stripped.data), stripped
    except (DecodeError, ValueError, RuntimeError, TypeError) as exc:
        raise InitauditError(f"{path}: not a readable ONNX model ({_first_line(exc)})") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
