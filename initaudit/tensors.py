"""Where a weight's bytes are and how to stream them as numbers, chunk by chunk.

A tensor is never decoded whole when it lives in a file: its byte range is read
window by window into one reused buffer (``pread``), which also gives numpy an
aligned buffer whatever the payload's offset in the file.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Iterator, Protocol

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import InitauditError

#: Element count per streamed chunk: 64 Ki values (256 KiB of float32) stays in L2.
CHUNK_ELEMS = 1 << 16

_PACKED_BITS = {TensorProto.INT4: 4, TensorProto.UINT4: 4}
for _name, _bits in (("FLOAT4E2M1", 4), ("INT2", 2), ("UINT2", 2)):
    if hasattr(TensorProto, _name):
        _PACKED_BITS[getattr(TensorProto, _name)] = _bits

FLOAT_TYPES = {
    TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16,
    *(getattr(TensorProto, n) for n in (
        "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "FLOAT4E2M1",
    ) if hasattr(TensorProto, n)),
}
INTEGER_TYPES = {
    TensorProto.INT8, TensorProto.UINT8, TensorProto.INT16, TensorProto.UINT16,
    TensorProto.INT32, TensorProto.UINT32, TensorProto.INT4, TensorProto.UINT4,
}


def dtype_name(data_type: int) -> str:
    return TensorProto.DataType.Name(data_type).lower()


def storage_nbytes(data_type: int, count: int) -> int:
    """Bytes the raw encoding of ``count`` elements takes (sub-byte types are packed)."""
    bits = _PACKED_BITS.get(data_type)
    if bits:
        return math.ceil(count * bits / 8)
    return count * np.dtype(helper.tensor_dtype_to_np_dtype(data_type)).itemsize


def decode_raw(buf: memoryview | bytes, data_type: int, count: int) -> np.ndarray:
    """Little-endian raw bytes → numbers numpy can reduce (bfloat16 → float32, int4 unpacked)."""
    bits = _PACKED_BITS.get(data_type)
    if bits:
        packed = np.frombuffer(buf, np.uint8)
        per_byte = 8 // bits
        shifts = np.arange(per_byte, dtype=np.uint8) * bits
        values = ((packed[:, None] >> shifts) & ((1 << bits) - 1)).ravel()[:count]
        if data_type == TensorProto.INT4 or data_type == getattr(TensorProto, "INT2", -1):
            values = values.astype(np.int8)
            values[values >= 1 << (bits - 1)] -= 1 << bits
            return values
        if data_type == getattr(TensorProto, "FLOAT4E2M1", -1):
            return values.view(helper.tensor_dtype_to_np_dtype(data_type)).astype(np.float32)
        return values
    if data_type == TensorProto.BFLOAT16:
        half = np.frombuffer(buf, "<u2", count)
        return (half.astype(np.uint32) << 16).view(np.float32)
    np_dtype = np.dtype(helper.tensor_dtype_to_np_dtype(data_type))
    values = np.frombuffer(buf, np_dtype.newbyteorder("<"), count)
    if np_dtype.itemsize == 1 and data_type in FLOAT_TYPES:  # float8 families via ml_dtypes
        return values.astype(np.float32)
    return values


class Payload(Protocol):
    def iter_bytes(self, chunk_bytes: int) -> Iterator[memoryview]: ...


@dataclass(frozen=True)
class MemoryPayload:
    """Raw bytes already in memory (an inline ``raw_data`` the onnx package parsed)."""

    data: bytes

    def iter_bytes(self, chunk_bytes: int) -> Iterator[memoryview]:
        view = memoryview(self.data)
        for start in range(0, len(view), chunk_bytes):
            yield view[start:start + chunk_bytes]


@dataclass(frozen=True)
class FilePayload:
    """A byte range of an already validated, already open file."""

    fd: int
    offset: int
    length: int

    def iter_bytes(self, chunk_bytes: int) -> Iterator[memoryview]:
        buffer = bytearray(min(chunk_bytes, self.length))
        view = memoryview(buffer)
        done = 0
        while done < self.length:
            want = min(chunk_bytes, self.length - done)
            got = os.preadv(self.fd, [view[:want]], self.offset + done)
            if got != want:
                raise InitauditError(f"file ended early while reading a tensor ({got} of {want} bytes)")
            yield view[:want]
            done += want


@dataclass(frozen=True)
class TensorSource:
    """One stored tensor: its name, type, shape and where its bytes are."""

    name: str
    data_type: int
    shape: tuple[int, ...]
    payload: Payload | None          # None: values live in typed proto fields
    proto: TensorProto | None = None  # for typed fields, decoded with onnx's helper
    location: str = "inline"          # inline | external | constant

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    @property
    def is_float(self) -> bool:
        return self.data_type in FLOAT_TYPES

    @property
    def dtype(self) -> str:
        return dtype_name(self.data_type)

    def iter_values(self, chunk_elems: int = CHUNK_ELEMS) -> Iterator[np.ndarray]:
        """Values in storage order, ``chunk_elems`` at a time (the last chunk shorter)."""
        if self.payload is None:
            values = self.to_array().reshape(-1)
            if self.is_float and values.dtype not in (np.float16, np.float32, np.float64):
                values = values.astype(np.float32)  # bfloat16 / float8 from ml_dtypes
            for start in range(0, values.size, chunk_elems):
                yield values[start:start + chunk_elems]
            return
        if self.data_type in _PACKED_BITS:
            chunk_elems -= chunk_elems % (8 // _PACKED_BITS[self.data_type])
        chunk_bytes = storage_nbytes(self.data_type, chunk_elems)
        remaining = self.count
        for buf in self.payload.iter_bytes(chunk_bytes):
            n = min(chunk_elems, remaining)
            yield decode_raw(buf, self.data_type, n)
            remaining -= n

    def to_array(self) -> np.ndarray:
        """The whole tensor in memory: for small tensors only (scales, shapes, zero points)."""
        if self.payload is None:
            assert self.proto is not None
            return numpy_helper.to_array(self.proto).reshape(self.shape)
        parts = [np.array(v, copy=True) for v in self.iter_values(max(self.count, 1))]
        flat = np.concatenate(parts) if parts else np.zeros(0)
        return flat.reshape(self.shape)


def typed_field_source(tensor: TensorProto, name: str, location: str) -> TensorSource:
    return TensorSource(name, tensor.data_type, tuple(tensor.dims), None, tensor, location)


def describe(tensor: onnx.TensorProto) -> str:
    return f"{tensor.name!r} ({dtype_name(tensor.data_type)}, shape {list(tensor.dims)})"
