"""Element types read by their ONNX number, whatever the installed onnx maps them to (onnx 1.16 maps
bfloat16 and float8 to 4-byte float32 and has no float4): sizes, every float8 / float4 code, and each
type read end to end from raw inline bytes, typed proto fields and external data."""
from __future__ import annotations

import math

import numpy as np
import pytest
from modelkit import bfloat16, model, raw_tensor, save, tensor, to_external, xavier_uniform
from onnx import TensorProto, helper

import initaudit
from initaudit.read.dtypes import ELEMENT_TYPES, nbytes, type_name
from initaudit.read.tensors import decode_raw

E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ, FLOAT4E2M1, UINT2, INT2 = 17, 18, 19, 20, 23, 25, 26
FLOAT8 = (E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ)
RNG = np.random.default_rng(13)

#: code → value, worked out by hand from the bit layouts (sign, exponent, mantissa, bias) of ONNX's Float8.md.
KNOWN_CODES = [
    (E4M3FN, 0x00, 0.0), (E4M3FN, 0x01, 2.0**-9), (E4M3FN, 0x07, 7 * 2.0**-9), (E4M3FN, 0x08, 2.0**-6),
    (E4M3FN, 0x38, 1.0), (E4M3FN, 0xC0, -2.0), (E4M3FN, 0x7E, 448.0), (E4M3FN, 0xFE, -448.0),
    (E4M3FNUZ, 0x01, 2.0**-10), (E4M3FNUZ, 0x08, 2.0**-7), (E4M3FNUZ, 0x40, 1.0), (E4M3FNUZ, 0xC0, -1.0),
    (E4M3FNUZ, 0x7F, 240.0), (E4M3FNUZ, 0xFF, -240.0),
    (E5M2, 0x01, 2.0**-16), (E5M2, 0x04, 2.0**-14), (E5M2, 0x3C, 1.0), (E5M2, 0xBC, -1.0),
    (E5M2, 0x7B, 57344.0), (E5M2, 0x7C, np.inf), (E5M2, 0xFC, -np.inf),
    (E5M2FNUZ, 0x01, 2.0**-17), (E5M2FNUZ, 0x40, 1.0), (E5M2FNUZ, 0xC0, -1.0), (E5M2FNUZ, 0x7F, 57344.0),
]
NAN_CODES = {E4M3FN: {0x7F, 0xFF}, E4M3FNUZ: {0x80}, E5M2: {0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF}, E5M2FNUZ: {0x80}}
FLOAT4_VALUES = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]


@pytest.mark.parametrize("data_type,code,value", KNOWN_CODES, ids=lambda v: hex(v) if isinstance(v, int) else None)
def test_float8_codes_worked_out_by_hand(data_type, code, value):
    assert decode_raw(bytes([code]), data_type, 1)[0] == value


@pytest.mark.parametrize("data_type", FLOAT8)
def test_float8_nan_codes(data_type):
    values = decode_raw(bytes(range(256)), data_type, 256)
    assert {code for code in range(256) if np.isnan(values[code])} == NAN_CODES[data_type]


def test_float8e5m2_is_the_top_byte_of_a_float16():
    codes = np.arange(256, dtype=np.uint16)
    as_half = (codes << 8).view(np.float16).astype(np.float32)
    np.testing.assert_array_equal(decode_raw(codes.astype(np.uint8).tobytes(), E5M2, 256), as_half)


#: (exponent bits, mantissa bits, bias) of each float8 type, from Float8.md.
LAYOUTS = {E4M3FN: (4, 3, 7), E4M3FNUZ: (4, 3, 8), E5M2: (5, 2, 15), E5M2FNUZ: (5, 2, 16)}


def spec_value(data_type: int, code: int) -> float:
    """One float8 code's value, one code at a time, written out from the spec's definition."""
    exp_bits, man_bits, bias = LAYOUTS[data_type]
    sign = -1.0 if code & 0x80 else 1.0
    exponent, mantissa = (code & 0x7F) >> man_bits, code & ((1 << man_bits) - 1)
    if code in NAN_CODES[data_type]:
        return math.nan
    if data_type == E5M2 and exponent == 31:
        return sign * math.inf
    if exponent == 0:  # subnormal
        return sign * math.ldexp(mantissa, 1 - bias - man_bits)
    return sign * math.ldexp((1 << man_bits) + mantissa, exponent - bias - man_bits)


@pytest.mark.parametrize("data_type", FLOAT8)
def test_every_float8_code_as_the_spec_defines_it(data_type):
    got = decode_raw(bytes(range(256)), data_type, 256)
    expected = np.array([spec_value(data_type, c) for c in range(256)])
    np.testing.assert_array_equal(got.astype(np.float64), expected)
    assert np.array_equal(np.signbit(got), np.signbit(expected))
    finite = got[:128][np.isfinite(got[:128])]
    assert np.all(np.diff(finite) > 0)  # positive codes in increasing order, no value twice


@pytest.mark.parametrize("fn,fnuz", [(E4M3FN, E4M3FNUZ), (E5M2, E5M2FNUZ)])
def test_fnuz_types_are_half_their_fn_twin(fn, fnuz):
    """Same bits, bias one higher: every code both types give a finite value is halved."""
    a, b = (decode_raw(bytes(range(256)), t, 256) for t in (fn, fnuz))
    both = np.isfinite(a) & np.isfinite(b) & (np.arange(256) != 0x80)
    assert both.sum() >= 240
    np.testing.assert_array_equal(b[both], a[both] / 2)


def test_float4e2m1_codes():
    packed = bytes([lo | hi << 4 for lo, hi in zip(range(0, 16, 2), range(1, 16, 2))])
    got = decode_raw(packed, FLOAT4E2M1, 16)
    assert got.tolist() == FLOAT4_VALUES
    assert np.signbit(got).tolist() == [i >= 8 for i in range(16)]


def test_packed_two_bit_codes():
    packed = bytes([0b11_10_01_00, 0b00_00_01_10])  # low bits first: 0, 1, 2, 3, 2, 1
    assert decode_raw(packed, UINT2, 6).tolist() == [0, 1, 2, 3, 2, 1]
    assert decode_raw(packed, INT2, 6).tolist() == [0, 1, -2, -1, -2, 1]


def test_int4_raw_decoding():
    packed = bytes([0x21, 0xF8, 0x07])  # low nibble first: 1, 2, -8, -1, 7, 0
    assert decode_raw(packed, TensorProto.INT4, 6).tolist() == [1, 2, -8, -1, 7, 0]
    assert decode_raw(packed, TensorProto.UINT4, 5).tolist() == [1, 2, 8, 15, 7]


@pytest.mark.parametrize("data_type,count,size", [
    (TensorProto.FLOAT, 3, 12), (TensorProto.DOUBLE, 3, 24), (TensorProto.FLOAT16, 3, 6),
    (TensorProto.BFLOAT16, 3, 6), (E4M3FN, 3, 3), (E5M2FNUZ, 3, 3), (TensorProto.INT4, 3, 2),
    (TensorProto.UINT4, 4, 2), (FLOAT4E2M1, 5, 3), (INT2, 5, 2), (TensorProto.INT64, 2, 16),
    (TensorProto.BOOL, 3, 3), (TensorProto.UINT16, 3, 6),
])
def test_stored_sizes(data_type, count, size):
    assert nbytes(data_type, count) == size


def test_numbers_and_names_agree_with_the_installed_onnx():
    known = dict(TensorProto.DataType.items())
    for number, element in ELEMENT_TYPES.items():
        onnx_name = element.name.upper()
        if onnx_name in known:
            assert known[onnx_name] == number
    assert type_name(TensorProto.BFLOAT16) == "bfloat16" and type_name(27) == "float6e2m3"


# --- each reader end to end, under whatever onnx is installed -----------------------------------------------


def _float8_codes(data_type: int, n: int) -> np.ndarray:
    """Random codes of finite values, small enough that their variance is a sane number."""
    values = decode_raw(bytes(range(256)), data_type, 256)
    usable = np.flatnonzero(np.isfinite(values) & (np.abs(values) <= 4))
    return RNG.choice(usable, n).astype(np.uint8)


def _case(dtype: str, shape: tuple[int, int]) -> tuple[int, bytes, list[int], np.ndarray]:
    """(data type, raw bytes, the int32_data field, the values they hold as float64)."""
    n = shape[0] * shape[1]
    if dtype == "bfloat16":
        codes, exact = bfloat16(RNG.normal(0, 0.05, n))
        return TensorProto.BFLOAT16, codes.tobytes(), codes.astype(np.int64).tolist(), exact.astype(np.float64)
    if dtype == "float16":
        half = RNG.normal(0, 0.05, n).astype(np.float16)
        return (TensorProto.FLOAT16, half.tobytes(), half.view(np.uint16).astype(np.int64).tolist(),
                half.astype(np.float64))
    if dtype == "float4e2m1":
        codes = RNG.integers(0, 16, n).astype(np.uint8)
        packed = (codes[0::2] | codes[1::2] << 4).astype(np.uint8)
        return FLOAT4E2M1, packed.tobytes(), packed.astype(np.int64).tolist(), np.array(FLOAT4_VALUES)[codes]
    data_type = {"float8e4m3fn": E4M3FN, "float8e4m3fnuz": E4M3FNUZ, "float8e5m2": E5M2,
                 "float8e5m2fnuz": E5M2FNUZ}[dtype]
    codes = _float8_codes(data_type, n)
    expected = np.array([spec_value(data_type, int(c)) for c in codes])
    return data_type, codes.tobytes(), codes.astype(np.int64).tolist(), expected




def _stored(name: str, data_type: int, shape, raw: bytes, int32_data: list[int], storage: str) -> TensorProto:
    if storage == "typed":
        t = TensorProto(name=name, data_type=data_type)
        t.dims.extend(shape)
        t.int32_data.extend(int32_data)
        return t
    return raw_tensor(name, data_type, shape, raw)


STORAGES = ["inline", "typed", "external"]
FLOAT_DTYPES = ["bfloat16", "float16", "float8e4m3fn", "float8e4m3fnuz", "float8e5m2", "float8e5m2fnuz",
                "float4e2m1"]


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_float_weight_read_in_every_storage(tmp_path, dtype, storage):
    shape = (48, 40)
    data_type, raw, int32_data, expected = _case(dtype, shape)
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])],
              [_stored("w", data_type, shape, raw, int32_data, storage)])
    if storage == "external":
        to_external(m, tmp_path, {"w"}, offset_pad=5)
    layer = initaudit.audit(save(m, tmp_path)).models[0].layers[0]
    assert layer.dtype == dtype and layer.storage == ("external" if storage == "external" else "inline")
    assert layer.stats.count == expected.size
    assert layer.stats.var == pytest.approx(expected.var(), rel=1e-9)
    assert layer.stats.mean == pytest.approx(expected.mean(), rel=1e-9, abs=1e-12)
    assert (layer.stats.min, layer.stats.max) == (expected.min(), expected.max())


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("data_type", [TensorProto.INT4, TensorProto.UINT4])
def test_int4_weight_dequantized_in_every_storage(tmp_path, data_type, storage):
    shape, zero = (32, 24), (0 if data_type == TensorProto.INT4 else 8)
    q = RNG.integers(-8, 8, shape) if data_type == TensorProto.INT4 else RNG.integers(0, 16, shape)
    nibbles = (q.ravel() & 0xF).astype(np.uint8)
    packed = (nibbles[0::2] | nibbles[1::2] << 4).astype(np.uint8)
    zp = raw_tensor("zp", data_type, [], bytes([zero]))
    m = model([helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["w"]),
               helper.make_node("MatMul", ["x", "w"], ["y"])],
              [_stored("q", data_type, shape, packed.tobytes(), packed.astype(np.int64).tolist(), storage),
               tensor("s", np.float32(0.0125)), zp], opset=21)
    if storage == "external":
        to_external(m, tmp_path, {"q"}, offset_pad=5)
    layer = initaudit.audit(save(m, tmp_path)).models[0].layers[0]
    expected = (q - zero).astype(np.float64) * np.float64(np.float32(0.0125))
    assert layer.dtype == type_name(data_type)
    assert layer.stats.var == pytest.approx(expected.var(), rel=1e-6)
    assert layer.stats.mean == pytest.approx(expected.mean(), rel=1e-6, abs=1e-9)


def test_external_bfloat16_is_sized_as_two_bytes(tmp_path):
    """The case reported against onnx 1.16 (a [4096, 4096] bfloat16 tensor refused as 32 MiB instead
    of 64), at [1024, 1024]: 2 MiB, several chunks."""
    codes, exact = bfloat16(RNG.normal(0, 0.02, (1024, 1024)).astype(np.float32))
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])],
              [raw_tensor("w", TensorProto.BFLOAT16, codes.shape, codes.tobytes())])
    to_external(m, tmp_path, {"w"}, offset_pad=5)
    layer = initaudit.audit(save(m, tmp_path)).models[0].layers[0]
    assert layer.storage == "external" and layer.stats.count == 1024 * 1024
    assert layer.stats.var == pytest.approx(float(exact.astype(np.float64).var()), rel=1e-9)


def test_bfloat16_weight(tmp_path):
    codes, w = bfloat16(xavier_uniform(RNG, (64, 32), 64, 32))
    t = raw_tensor("w", TensorProto.BFLOAT16, codes.shape, codes.tobytes())
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [t])
    layer = initaudit.audit(save(m, tmp_path)).models[0].layers[0]
    assert layer.dtype == "bfloat16"
    assert layer.stats.var == pytest.approx(float(w.astype(np.float64).var()), rel=1e-9)


@pytest.mark.parametrize("storage", ["inline", "typed"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float8e4m3fn", "float8e5m2fnuz"])
def test_sparse_initializer_keeps_its_type(tmp_path, dtype, storage):
    shape = (16, 12)
    data_type, raw, int32_data, values = _case(dtype, (1, 40))
    flat = np.sort(RNG.choice(shape[0] * shape[1], 40, replace=False))
    sparse = helper.make_sparse_tensor(_stored("w", data_type, [40], raw, int32_data, storage),
                                       tensor("w_idx", flat.astype(np.int64)), list(shape))
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [])
    m.graph.sparse_initializer.append(sparse)
    layer = initaudit.audit(save(m, tmp_path)).models[0].layers[0]
    expected = np.zeros(shape[0] * shape[1])
    expected[flat] = values
    assert layer.dtype == dtype and layer.stats.count == expected.size
    assert layer.stats.var == pytest.approx(expected.var(), rel=1e-9)
    assert (layer.stats.min, layer.stats.max) == (expected.min(), expected.max())
