"""The planting helpers of ``scripts/plant_defects.py``: int8 re-quantization as onnxruntime does it, the
defects written into int8 codes, scales and zero points, and the float16 copy.  Expected values come from
numpy float64 on the same numbers; the tally over published models itself runs outside the suite."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from modelkit import model, save, tensor
from onnx import TensorProto, helper, numpy_helper
from trainedkit import trained_like

import initaudit

_SPEC = importlib.util.spec_from_file_location(
    "plant_defects", Path(__file__).resolve().parent.parent / "scripts" / "plant_defects.py")
assert _SPEC is not None and _SPEC.loader is not None
pd = importlib.util.module_from_spec(_SPEC)
sys.modules["plant_defects"] = pd   # its dataclasses look their module up
_SPEC.loader.exec_module(pd)


def _weights(seed: int = 0, shape=(8, 4, 3, 3)) -> np.ndarray:
    return trained_like(np.random.default_rng(seed), shape).astype(np.float64)


def _by_hand(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel, one channel at a time: scale max|w|/127, codes round(w/scale)."""
    scales, codes = [], []
    for channel in w:
        scale = np.float32(np.abs(channel).max() / 127)
        scales.append(scale)
        codes.append(np.clip(np.rint(channel / np.float64(scale)), -128, 127).astype(np.int8))
    return np.stack(codes), np.array(scales, np.float32)


def test_quantize_per_channel_and_per_tensor_by_hand():
    w = _weights()
    codes, scale = pd.quantize(w, 0, np.zeros(8, np.int8))
    want_codes, want_scale = _by_hand(w)
    np.testing.assert_array_equal(codes, want_codes)
    np.testing.assert_array_equal(scale, want_scale)
    codes, scale = pd.quantize(w, None, np.zeros((), np.int8))
    assert scale.shape == () and float(scale) == pytest.approx(np.abs(w).max() / 127, rel=1e-7)
    assert np.abs(codes).max() == 127
    w[3] = 0.0   # an all-zero channel keeps scale 1 (and codes at the zero point)
    codes, scale = pd.quantize(w, 0, np.zeros(8, np.int8))
    assert scale[3] == 1.0 and not codes[3].any()


def _qdq(w: np.ndarray, per_channel: bool = True) -> onnx.ModelProto:
    codes, scale = _by_hand(w) if per_channel else pd.quantize(w, None, np.zeros((), np.int8))
    zero = np.zeros(scale.shape, np.int8)
    node = helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], **({"axis": 0} if per_channel else {}))
    conv = helper.make_node("Conv", ["x", "w"], ["y"])
    return model([node, conv], [tensor("wq", codes), tensor("ws", scale), tensor("wz", zero)])


def _steps(m: onnx.ModelProto) -> np.ndarray:
    """The per-channel scales of the model, shaped against the weight."""
    st = pd.stored(m, "wq")
    assert st is not None and st.scale is not None
    return numpy_helper.to_array(st.scale).astype(np.float64).reshape(-1, 1, 1, 1)


@pytest.mark.parametrize("defect, steps", [("zp+1", 1), ("zp+8", 8), ("uint8_zp0", 128)])
def test_zero_point_defects_shift_every_value_by_whole_steps(defect, steps):
    m = _qdq(_weights(1))
    st = pd.stored(m, "wq")
    assert st is not None and st.axis == 0
    before = pd.dequantized(st)
    pd.plant(st, defect, "OIHW", 36, np.random.default_rng(0))
    np.testing.assert_allclose(pd.dequantized(st), before + steps * _steps(m), rtol=0, atol=1e-12)
    if defect == "uint8_zp0":
        assert st.values.data_type == TensorProto.UINT8 and st.zero is not None
        assert st.zero.data_type == TensorProto.UINT8 and not numpy_helper.to_array(st.zero).any()


@pytest.mark.parametrize("defect, steps", [("channel_zp+8", 8), ("channel_zp+128", 128)])
def test_a_channel_zero_point_moves_that_channel_only(defect, steps):
    m = _qdq(_weights(2))
    st = pd.stored(m, "wq")
    assert st is not None
    before = pd.dequantized(st)
    pd.plant(st, defect, "OIHW", 36, np.random.default_rng(0))
    moved = np.flatnonzero(np.any(pd.dequantized(st) != before, axis=(1, 2, 3)))
    assert moved.size == 1
    c = int(moved[0])
    np.testing.assert_allclose(pd.dequantized(st)[c], before[c] + steps * _steps(m)[c, 0, 0, 0], atol=1e-12)


def test_dead_quarter_sets_codes_to_the_zero_point_and_nan_goes_into_a_scale():
    m = _qdq(_weights(3))
    st = pd.stored(m, "wq")
    assert st is not None
    saved = st.snapshot()
    before = pd.dequantized(st)
    pd.plant(st, "dead_quarter", "OIHW", 36, np.random.default_rng(0))
    after = pd.dequantized(st)
    dead = [c for c in range(8) if not after[c].any()]
    assert len(dead) == 2 and all(np.array_equal(after[c], before[c]) for c in range(8) if c not in dead)
    st.restore(saved)
    np.testing.assert_array_equal(pd.dequantized(st), before)
    pd.plant(st, "nan", "OIHW", 36, np.random.default_rng(0))
    nan_channels = np.flatnonzero(np.isnan(pd.dequantized(st)).all(axis=(1, 2, 3)))
    assert nan_channels.size == 1 and np.isnan(pd.dequantized(st)).sum() == 4 * 3 * 3
    tensor_wide = pd.stored(_qdq(_weights(3), per_channel=False), "wq")
    assert tensor_wide is not None and tensor_wide.axis is None
    pd.plant(tensor_wide, "nan", "OIHW", 36, np.random.default_rng(0))
    assert np.isnan(pd.dequantized(tensor_wide)).all()


def test_a_redrawn_int8_layer_is_requantized_with_a_fresh_scale():
    m = _qdq(_weights(4))
    st = pd.stored(m, "wq")
    assert st is not None
    pd.plant(st, "normal_0.02", "OIHW", 36, np.random.default_rng(5))
    redrawn = np.random.default_rng(5).normal(0.0, 0.02, (8, 4, 3, 3)).astype(np.float32).astype(np.float64)
    codes, scale = _by_hand(redrawn)
    np.testing.assert_array_equal(numpy_helper.to_array(st.values), codes)
    np.testing.assert_array_equal(numpy_helper.to_array(st.scale), scale)


def test_offsets_add_multiples_of_the_layer_sigma():
    w = _weights(6)
    out = pd.damage(w, "offset_1", "OIHW", 36, np.random.default_rng(0))
    np.testing.assert_allclose(out - w, w.std(), rtol=1e-12)
    assert pd.damage(w, "offset_3", "OIHW", 36, np.random.default_rng(0)).mean() == pytest.approx(
        w.mean() + 3 * w.std(), rel=1e-12)


def test_float16_copy_is_audited_as_float16(tmp_path):
    w = _weights(7).astype(np.float32)
    m = model([helper.make_node("Conv", ["x", "w"], ["y"])], [tensor("w", w)])
    half = pd.to_float16(m, {"w"})
    assert [n.op_type for n in half.graph.node] == ["Cast", "Conv"]
    layer = initaudit.audit(save(half, tmp_path), jobs=1).models[0].layers[0]
    rounded = w.astype(np.float16).astype(np.float64)
    assert layer.name == "w_fp16" and layer.dtype == "float16" and layer.op == "Conv"
    assert layer.stats.mean == pytest.approx(rounded.mean(), rel=1e-9)
    assert layer.stats.var == pytest.approx(rounded.var(), rel=1e-9)
    st = pd.stored(half, "w_fp16")
    assert st is not None and not st.quantized
    pd.plant(st, "big", "OIHW", 36, np.random.default_rng(0))   # 1e5 does not fit float16: inf
    assert np.isinf(pd.dequantized(st)).sum() == 1
    assert pd.expected("big", "float16") == ("IA201", ("fail",))
    assert pd.expected("big", "int8-axis") == ("IA206", ("warn", "fail"))


def test_zero_point_defects_need_zero_points():
    assert [d for d in pd.DEFECTS if pd.applies(d, "float16")] == [
        "torch_default", "normal_0.02", "dead_quarter", "nan", "big", "offset_0.5", "offset_1", "offset_3"]
    assert pd.applies("uint8_zp0", "int8-tensor") and not pd.applies("channel_zp+8", "int8-tensor")
    assert pd.applies("channel_zp+8", "int8-axis")


def test_requantizing_reproduces_onnxruntime(tmp_path):
    """``quantize`` writes what onnxruntime's static QDQ quantizer writes for a weight."""
    pytest.importorskip("onnxruntime")
    w = _weights(8, (16, 8, 3, 3)).astype(np.float32)
    source = save(model([helper.make_node("Conv", ["x", "w"], ["y"])], [tensor("w", w)],
                        inputs=(("x", TensorProto.FLOAT, [1, 8, 12, 12]),)), tmp_path, "float.onnx")
    for per_channel in (True, False):
        out = tmp_path / f"q{per_channel}.onnx"
        assert pd.quantized(source, out, per_channel) is None
        q = onnx.load(str(out))
        st = pd.stored(q, "w_quantized")
        assert st is not None and st.zero is not None and st.scale is not None
        assert (st.axis == 0) is per_channel
        codes, scale = pd.quantize(w.astype(np.float64), st.axis, numpy_helper.to_array(st.zero))
        np.testing.assert_array_equal(codes, numpy_helper.to_array(st.values))
        np.testing.assert_allclose(scale.ravel(), numpy_helper.to_array(st.scale).ravel(), rtol=1e-7)
