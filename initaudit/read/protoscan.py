"""Locate large tensor payloads in an ONNX file without letting protobuf copy them.

A small reader of the protobuf wire format walks ModelProto → graphs (and their
nodes' subgraphs, Constant tensors, model-local functions) → TensorProto, and
records the byte range of every ``raw_data`` payload of at least ``min_bytes``.
It returns a copy of the model bytes in which those tensors point, as external
data, back into the model file itself (under a location no file can have), so
the onnx package parses only the graph structure and initaudit streams the
payloads from the file like any external data.

Messages too small to hold a large payload are copied as they are without being
parsed, so the walk costs a few reads per node, not per byte.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass

from initaudit.errors import InitauditError

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
MAX_DEPTH = 64

# field numbers from onnx.proto
MODEL_GRAPH, MODEL_FUNCTIONS = 7, 25
GRAPH_NODE, GRAPH_INITIALIZER = 1, 5
NODE_ATTRIBUTE = 5
ATTR_T, ATTR_G, ATTR_TENSORS, ATTR_GRAPHS = 5, 6, 10, 11
FUNCTION_NODE = 7
TENSOR_RAW_DATA, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 9, 13, 14


class Malformed(InitauditError):
    pass


@dataclass(frozen=True)
class Field:
    number: int
    wire: int
    start: int      # first byte of the tag
    value: int      # varint value, or offset of the payload of a length-delimited field
    end: int        # one past the field's last byte

    @property
    def length(self) -> int:
        return self.end - self.value


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise Malformed("malformed or truncated protobuf (bad varint)")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def fields(buf, start: int, end: int):
    """The fields of the message occupying ``buf[start:end]``."""
    pos = start
    while pos < end:
        tag, value_pos = _varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise Malformed("malformed protobuf (field number 0)")
        if wire == VARINT:
            value, after = _varint(buf, value_pos, end)
        elif wire == LENGTH:
            length, value = _varint(buf, value_pos, end)
            after = value + length
        elif wire == FIXED64:
            value, after = value_pos, value_pos + 8
        elif wire == FIXED32:
            value, after = value_pos, value_pos + 4
        else:
            raise Malformed(f"malformed protobuf (wire type {wire})")
        if after > end:
            raise Malformed("truncated protobuf (a field runs past the end of its message)")
        yield Field(number, wire, pos, value, after)
        pos = after


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | LENGTH) + _encode_varint(len(payload)) + payload


@dataclass
class Stripped:
    data: bytes          # the model without its large payloads
    marker: str          # external-data location that means "the model file itself"
    payloads: int        # how many payloads were moved out
    payload_bytes: int


class _Rewriter:
    def __init__(self, buf, min_bytes: int) -> None:
        self.buf = buf
        self.min_bytes = min_bytes
        self.marker = f"\x00initaudit-self-{secrets.token_hex(8)}"
        self.payloads = 0
        self.payload_bytes = 0

    def message(self, start: int, end: int, children: dict[int, str], depth: int) -> bytes | None:
        """Re-encoded message, or None when nothing inside changes (the caller copies the span)."""
        if depth > MAX_DEPTH:
            raise Malformed("protobuf nested too deeply")
        pieces: list[bytes] = []
        changed = False
        copied_from = start
        for field in fields(self.buf, start, end):
            kind = children.get(field.number)
            if kind is None or field.wire != LENGTH or field.length < self.min_bytes:
                continue
            new = getattr(self, kind)(field.value, field.end, depth + 1)
            if new is None:
                continue
            changed = True
            pieces.append(bytes(self.buf[copied_from:field.start]))
            pieces.append(_length_field(field.number, new))
            copied_from = field.end
        if not changed:
            return None
        pieces.append(bytes(self.buf[copied_from:end]))
        return b"".join(pieces)

    def model(self, start, end, depth):
        return self.message(start, end, {MODEL_GRAPH: "graph", MODEL_FUNCTIONS: "function"}, depth)

    def graph(self, start, end, depth):
        return self.message(start, end, {GRAPH_NODE: "node", GRAPH_INITIALIZER: "tensor"}, depth)

    def function(self, start, end, depth):
        return self.message(start, end, {FUNCTION_NODE: "node"}, depth)

    def node(self, start, end, depth):
        return self.message(start, end, {NODE_ATTRIBUTE: "attribute"}, depth)

    def attribute(self, start, end, depth):
        return self.message(start, end, {ATTR_T: "tensor", ATTR_G: "graph", ATTR_TENSORS: "tensor",
                                         ATTR_GRAPHS: "graph"}, depth)

    def tensor(self, start, end, depth):
        raw = None
        kept: list[bytes] = []
        for field in fields(self.buf, start, end):
            if field.number == TENSOR_RAW_DATA and field.wire == LENGTH:
                raw = field
            elif field.number in (TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION):
                return None  # already external (or contradictory): leave it to the loader's checks
            else:
                kept.append(bytes(self.buf[field.start:field.end]))
        if raw is None or raw.length < self.min_bytes:
            return None
        self.payloads += 1
        self.payload_bytes += raw.length
        entries = (("location", self.marker), ("offset", str(raw.value)), ("length", str(raw.length)))
        for key, value in entries:
            entry = _length_field(1, key.encode()) + _length_field(2, value.encode())
            kept.append(_length_field(TENSOR_EXTERNAL_DATA, entry))
        kept.append(_encode_varint(TENSOR_DATA_LOCATION << 3 | VARINT) + _encode_varint(1))
        return b"".join(kept)


def strip_payloads(buf, min_bytes: int = 4096) -> Stripped:
    """Model bytes with every raw payload ≥ ``min_bytes`` replaced by a reference into ``buf``'s file."""
    rewriter = _Rewriter(buf, min_bytes)
    new = rewriter.model(0, len(buf), 0)
    data = bytes(buf[0:len(buf)]) if new is None else new
    return Stripped(data, rewriter.marker, rewriter.payloads, rewriter.payload_bytes)
