"""ONNX element types by their ``TensorProto.DataType`` number: name, stored size, decoding of raw bytes.

Defined here rather than taken from the installed onnx package, because what onnx maps a type to
changed between releases (onnx 1.16 maps bfloat16 and float8 to 4-byte float32 and int4 to int8,
later releases to ml_dtypes), while the bytes in a model are fixed by the ONNX standard: little
endian, bfloat16 the top half of a float32, float8 / float4 the bit layouts of ONNX's Float8.md,
4-bit and 2-bit integers packed low bits first.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ElementType:
    """How one ONNX element type is stored: ``bits`` per element (4 and 2 are packed into bytes)."""

    name: str
    bits: int
    numpy: str | None = None   # numpy reads the raw bytes as this dtype; None: decoded by a table or unpacked


#: Every type initaudit reads, by its number in onnx.proto.
ELEMENT_TYPES: dict[int, ElementType] = {
    1: ElementType("float", 32, "<f4"),
    2: ElementType("uint8", 8, "u1"),
    3: ElementType("int8", 8, "i1"),
    4: ElementType("uint16", 16, "<u2"),
    5: ElementType("int16", 16, "<i2"),
    6: ElementType("int32", 32, "<i4"),
    7: ElementType("int64", 64, "<i8"),
    9: ElementType("bool", 8, "?"),
    10: ElementType("float16", 16, "<f2"),
    11: ElementType("double", 64, "<f8"),
    12: ElementType("uint32", 32, "<u4"),
    13: ElementType("uint64", 64, "<u8"),
    16: ElementType("bfloat16", 16),
    17: ElementType("float8e4m3fn", 8),
    18: ElementType("float8e4m3fnuz", 8),
    19: ElementType("float8e5m2", 8),
    20: ElementType("float8e5m2fnuz", 8),
    21: ElementType("uint4", 4),
    22: ElementType("int4", 4),
    23: ElementType("float4e2m1", 4),
    25: ElementType("uint2", 2),
    26: ElementType("int2", 2),
}

#: Names of the types initaudit does not read (for messages), in the spelling of onnx's enum, lowercased.
OTHER_TYPE_NAMES: dict[int, str] = {
    0: "undefined", 8: "string", 14: "complex64", 15: "complex128", 24: "float8e8m0",
    27: "float6e2m3", 28: "float6e3m2",
}

BFLOAT16 = 16
FLOAT_TYPES = frozenset({1, 10, 11, 16, 17, 18, 19, 20, 23})
INTEGER_TYPES = frozenset({2, 3, 4, 5, 6, 12, 21, 22})
SIGNED_PACKED = frozenset({22, 26})
NUMERIC_TYPES = frozenset(ELEMENT_TYPES)


def type_name(data_type: int) -> str:
    known = ELEMENT_TYPES.get(data_type)
    return known.name if known else OTHER_TYPE_NAMES.get(data_type, f"data type {data_type}")


def packed_bits(data_type: int) -> int | None:
    """Bits per element of a sub-byte type (several elements share a byte), None otherwise."""
    bits = ELEMENT_TYPES[data_type].bits
    return bits if bits < 8 else None


def nbytes(data_type: int, count: int) -> int:
    """Bytes ``count`` elements take in ``raw_data`` or external data (sub-byte types packed, padded)."""
    return -(-count * ELEMENT_TYPES[data_type].bits // 8)


def _minifloat_table(exp_bits: int, man_bits: int, bias: int, special: str) -> np.ndarray:
    """float32 value of every code of a small float format (sign, exponent, mantissa), per Float8.md.

    ``special``: ``"fn"`` only S.1111.111 is NaN (no infinity); ``"fnuz"`` only 0x80 (the would-be
    negative zero) is NaN; ``"ieee"`` an all-ones exponent is ±inf (mantissa 0) or NaN; ``"none"``
    every code is a finite number (float4e2m1).
    """
    codes = np.arange(1 << (1 + exp_bits + man_bits))
    exp_max, man_max = (1 << exp_bits) - 1, (1 << man_bits) - 1
    sign = (codes >> (exp_bits + man_bits)) & 1
    exponent = (codes >> man_bits) & exp_max
    fraction = (codes & man_max) / float(1 << man_bits)
    magnitude = np.where(exponent == 0, fraction * 2.0 ** (1 - bias), (1 + fraction) * 2.0 ** (exponent - bias))
    values = np.where(sign == 1, -magnitude, magnitude)
    if special == "fn":
        values[(exponent == exp_max) & ((codes & man_max) == man_max)] = np.nan
    elif special == "fnuz":
        values[1 << (exp_bits + man_bits)] = np.nan
    elif special == "ieee":
        top = exponent == exp_max
        values[top] = np.where((codes[top] & man_max) == 0, np.copysign(np.inf, values[top]), np.nan)
    return values.astype(np.float32)


#: Code → float32 value tables of the float8 / float4 types.
TABLES: dict[int, np.ndarray] = {
    17: _minifloat_table(4, 3, 7, "fn"),
    18: _minifloat_table(4, 3, 8, "fnuz"),
    19: _minifloat_table(5, 2, 15, "ieee"),
    20: _minifloat_table(5, 2, 16, "fnuz"),
    23: _minifloat_table(2, 1, 1, "none"),
}


def decode(buf: memoryview | bytes, data_type: int, count: int) -> np.ndarray:
    """The first ``count`` elements of little-endian raw bytes, as numbers numpy can reduce.

    bfloat16, float8 and float4 come out as float32 (exactly), packed integers as int8 / uint8.
    """
    kind = ELEMENT_TYPES[data_type]
    if kind.numpy is not None:
        return np.frombuffer(buf, kind.numpy, count)
    if data_type == BFLOAT16:
        return (np.frombuffer(buf, "<u2", count).astype(np.uint32) << 16).view(np.float32)
    if kind.bits >= 8:
        return TABLES[data_type][np.frombuffer(buf, np.uint8, count)]
    packed = np.frombuffer(buf, np.uint8, -(-count * kind.bits // 8))
    shifts = np.arange(8 // kind.bits, dtype=np.uint8) * kind.bits
    codes = ((packed[:, None] >> shifts) & ((1 << kind.bits) - 1)).ravel()[:count]
    if data_type in TABLES:
        return TABLES[data_type][codes]
    if data_type in SIGNED_PACKED:
        signed = codes.astype(np.int8)
        signed[signed >= 1 << (kind.bits - 1)] -= 1 << kind.bits
        return signed
    return codes


def int32_field_bytes(values: np.ndarray, data_type: int) -> bytes:
    """The raw bytes of values stored one per int32 (``int32_data``), as onnx.proto prescribes for
    8/16-bit integers, bool, float16, bfloat16 and float8 (their bit patterns), and for 4/2-bit types
    one byte of packed elements per int32."""
    width = max(ELEMENT_TYPES[data_type].bits, 8) // 8
    return np.asarray(values, np.int64).astype(f"<u{width}").tobytes()


#: Significant bits a value keeps in each narrow type (a float's significand with its implicit bit, an
#: integer code's width): what a copy of a float32 weight in that type can keep of it.  float32 and wider
#: are absent (full precision).
PRECISION_BITS: dict[int, int] = {2: 8, 3: 8, 4: 16, 5: 16, 10: 11, 16: 8, 17: 4, 18: 4, 19: 3, 20: 3, 21: 4, 22: 4,
                                  23: 2, 25: 2, 26: 2}
