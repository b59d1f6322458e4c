"""The model pairs of tests/fixtures/diff/ hold what pairs.json says (``scripts/make_diff_pairs.py``).

Checked with onnx and numpy alone, independently of ``initaudit diff``: every named file and tensor
exists; B's weights, dequantized here from their initializers (QDQ, ConvInteger/MatMulInteger,
MatMulNBits), are close to A's in the healthy pairs and off exactly as planted in the damaged ones; a
layer planted unchanged is bit-identical, one planted far more changed moved far more; a folded
BatchNorm is W·γ/√(var+ε); a layer on one side only is missing from the other.
"""
from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "tests" / "fixtures" / "diff"
MANIFEST = json.loads((FOLDER / "pairs.json").read_text())
PAIRS = {pair["name"]: pair for pair in MANIFEST["pairs"]}
KINDS = {"quantized", "finetune", "export", "folded"}
PROBLEMS = {"quantization_damage", "unchanged", "changed_far_more", "only_in_a", "only_in_b"}
SUFFIXES = ("_Transposed_quantized", "_quantized", "_Q4")
#: SQNR (dB) a healthy quantized layer reaches at least, by its storage's bits (measured with onnxruntime
#: 1.32: int8 47.7–49.1 dB, 4-bit 24.1–25.2 dB on these models; the bounds leave room for another release).
HEALTHY_SQNR = {8: 30.0, 4: 15.0}


def by_kind(*kinds: str, damaged: bool | None = None) -> list[str]:
    return [name for name, pair in PAIRS.items() if pair["kind"] in kinds
            and (damaged is None or bool(pair["planted"]) == damaged)]


@cache
def model(file: str) -> onnx.ModelProto:
    return onnx.load(str(FOLDER / file))


def initializers(file: str) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model(file).graph.initializer}


def sqnr_db(reference: np.ndarray, other: np.ndarray) -> float:
    ref, err = reference.astype(np.float64), other.astype(np.float64) - reference.astype(np.float64)
    return float(10 * np.log10(np.sum(ref * ref) / max(np.sum(err * err), 1e-300)))


def _reader(file: str, tensor: str) -> tuple[onnx.NodeProto | None, int]:
    for node in model(file).graph.node:
        if tensor in node.input:
            return node, list(node.input).index(tensor)
    return None, -1


def _along(values: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape) if values.ndim else values


def _nbits(node: onnx.NodeProto, inits: dict[str, np.ndarray]) -> np.ndarray:
    """MatMulNBits' [N, K] matrix: 4-bit codes low nibble first, (code − zero point) · scale per block."""
    attrs = {a.name: a.i for a in node.attribute}
    n, k, block, bits = attrs["N"], attrs["K"], attrs["block_size"], attrs["bits"]
    assert bits == 4
    packed = inits[node.input[1]].reshape(n, -1)
    codes = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(n, -1).astype(np.float64)
    blocks = codes.shape[1] // block
    scales = inits[node.input[2]].reshape(n, blocks).astype(np.float64)
    if len(node.input) > 3 and node.input[3]:
        zp_packed = inits[node.input[3]].reshape(n, -1)
        zero = np.stack([zp_packed & 0x0F, zp_packed >> 4], axis=-1).reshape(n, -1)[:, :blocks].astype(np.float64)
    else:
        zero = np.full((n, blocks), 8.0)
    return ((codes.reshape(n, blocks, block) - zero[..., None]) * scales[..., None]).reshape(n, -1)[:, :k]


def dequantized(file: str, tensor: str) -> np.ndarray:
    """The values a weight's consumer sees, in float64, from the initializers alone."""
    inits = initializers(file)
    node, _ = _reader(file, tensor)
    if node is None or node.op_type in ("Conv", "Gemm", "MatMul"):
        return inits[tensor].astype(np.float64)
    q = inits[tensor].astype(np.float64)
    if node.op_type == "DequantizeLinear":
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        scale, zero = inits[node.input[1]], inits[node.input[2]]
        return (q - _along(zero, axis, q.ndim)) * _along(scale, axis, q.ndim)
    if node.op_type in ("ConvInteger", "MatMulInteger"):
        zero = inits[node.input[3]].astype(np.float64)
        scale = inits[tensor.removesuffix("_quantized") + "_scale"].astype(np.float64)  # onnxruntime's naming
        assert zero.ndim == 0 and scale.ndim == 0
        return (q - zero) * scale
    if node.op_type == "MatMulNBits":
        return _nbits(node, inits)
    raise AssertionError(f"{file}: {tensor!r} is read by {node.op_type}")


def as_in_a(pair: dict, layer: dict) -> np.ndarray:
    """B's layer dequantized, in A's layout."""
    values = dequantized(pair["b"], layer["b"])
    return values.T if layer["transposed"] else values


def layer_of(pair: dict, a_name: str) -> dict:
    return next(layer for layer in pair["layers"] if layer["a"] == a_name)


# --- the manifest ------------------------------------------------------------------------------------

def test_the_manifest_covers_every_kind_and_problem():
    assert {pair["kind"] for pair in PAIRS.values()} == KINDS
    assert {p["problem"] for pair in PAIRS.values() for p in pair["planted"]} == PROBLEMS
    assert len(PAIRS) == len(MANIFEST["pairs"])  # names are unique


def test_the_folder_is_small_and_every_file_is_used():
    files = {p.name for p in FOLDER.iterdir()} - {"pairs.json"}
    assert files == {pair[side] for pair in PAIRS.values() for side in ("a", "b")}
    assert sum(p.stat().st_size for p in FOLDER.iterdir()) < 2_000_000


@pytest.mark.parametrize("name", PAIRS)
def test_every_named_tensor_exists(name):
    pair = PAIRS[name]
    assert pair["kind"] in KINDS and pair["how"] and "\n" not in pair["how"]
    a, b = initializers(pair["a"]), initializers(pair["b"])
    for layer in pair["layers"]:
        assert layer["a"] in a and layer["b"] in b, layer
    for planted in pair["planted"]:
        assert planted["problem"] in PROBLEMS
        assert (planted["a"] is None) == (planted["problem"] == "only_in_b")
        assert (planted["b"] is None) == (planted["problem"] == "only_in_a")
        assert planted["a"] is None or planted["a"] in a
        assert planted["b"] is None or planted["b"] in b
        if planted["a"] is not None and planted["b"] is not None:
            assert {"a": planted["a"], "b": planted["b"]} == {k: layer_of(pair, planted["a"])[k] for k in "ab"}


@pytest.mark.parametrize("name", PAIRS)
def test_renamed_says_whether_a_layer_changed_its_name(name):
    pair = PAIRS[name]

    def base(n: str) -> str:
        return next((n.removesuffix(s) for s in SUFFIXES if n.endswith(s)), n)

    assert pair["renamed"] == any(base(layer["b"]) != layer["a"] for layer in pair["layers"])


def test_the_exports_rename_tensors():
    assert PAIRS["encoder_export"]["renamed"] and PAIRS["resblock_export"]["renamed"]
    b_names = {layer["b"] for layer in PAIRS["encoder_export"]["layers"]}
    assert "onnx::MatMul_205" in initializers("encoder.legacy.onnx") and "val_86" in b_names


# --- quantized pairs ---------------------------------------------------------------------------------

def _bits(pair: dict, layer: dict) -> int | None:
    node, _ = _reader(pair["b"], layer["b"])
    if node is not None and node.op_type == "MatMulNBits":
        return 4
    return 8 if initializers(pair["b"])[layer["b"]].dtype in (np.int8, np.uint8) else None


@pytest.mark.parametrize("name", by_kind("quantized", damaged=False))
def test_healthy_quantized_pairs_dequantize_close_to_a(name):
    pair = PAIRS[name]
    a = initializers(pair["a"])
    quantized = 0
    for layer in pair["layers"]:
        bits = _bits(pair, layer)
        if bits is None:  # left in float by the quantizer (MatMulNBits skips Gemm)
            assert np.array_equal(a[layer["a"]], initializers(pair["b"])[layer["b"]])
            continue
        quantized += 1
        assert sqnr_db(a[layer["a"]], as_in_a(pair, layer)) > HEALTHY_SQNR[bits], layer
    assert quantized >= 3


@pytest.mark.parametrize("name", [n for n in by_kind("quantized", damaged=True) if PAIRS[n]["damage"]["healthy"]])
def test_a_damaged_file_differs_from_its_healthy_copy_in_the_damaged_tensor_only(name):
    pair = PAIRS[name]
    damaged, healthy = initializers(pair["b"]), initializers(pair["damage"]["healthy"])
    assert damaged.keys() == healthy.keys()
    differ = [t for t in damaged if not np.array_equal(damaged[t], healthy[t])]
    assert differ == [pair["damage"]["tensor"]]


@pytest.mark.parametrize("name", [n for n in by_kind("quantized") if (PAIRS[n]["damage"] or {}).get("op") == "scale"])
def test_a_wrong_scale_puts_the_layer_off_by_its_factor(name):
    pair = PAIRS[name]
    factor = pair["damage"]["by"]
    assert factor in (4.0, 0.25)
    planted = pair["planted"][0]
    a = initializers(pair["a"])[planted["a"]].astype(np.float64)
    b = as_in_a(pair, layer_of(pair, planted["a"]))
    assert np.linalg.norm(b) / np.linalg.norm(a) == pytest.approx(factor, rel=0.02)
    assert sqnr_db(a, b / factor) > HEALTHY_SQNR[_bits(pair, layer_of(pair, planted["a"]))]  # only the scale is off
    assert sqnr_db(a, b) < 3.0
    for layer in pair["layers"]:  # every other layer as healthy as ever
        if layer["a"] != planted["a"] and _bits(pair, layer):
            assert sqnr_db(initializers(pair["a"])[layer["a"]], as_in_a(pair, layer)) > HEALTHY_SQNR[_bits(pair, layer)], layer


@pytest.mark.parametrize("name", [n for n in by_kind("quantized") if (PAIRS[n]["damage"] or {}).get("op") == "shift"])
def test_a_shifted_zero_point_offsets_the_layer_by_that_many_codes(name):
    pair = PAIRS[name]
    codes = pair["damage"]["by"]
    assert abs(codes) == 40
    planted = pair["planted"][0]
    layer = layer_of(pair, planted["a"])
    a = initializers(pair["a"])[planted["a"]].astype(np.float64)
    b = as_in_a(pair, layer)
    node, _ = _reader(pair["b"], layer["b"])
    scale_name = node.input[1] if node.op_type == "DequantizeLinear" else layer["b"].removesuffix("_quantized") + "_scale"
    scale = initializers(pair["b"])[scale_name].astype(np.float64)
    offset = (b - a).mean(axis=1) if scale.ndim else (b - a).mean()  # per output channel (axis 0) or per tensor
    np.testing.assert_allclose(offset, -codes * scale, atol=0.5 * float(np.max(scale)))
    assert sqnr_db(a, b) < 10.0


def test_an_outlier_channel_quantized_per_tensor_crushes_the_others():
    pair = PAIRS["lenet_outlier_per_tensor"]
    damage, planted = pair["damage"], pair["planted"][0]
    channel = damage["channel"]
    a = initializers(pair["a"])[planted["a"]].astype(np.float64)
    sample = onnx.load(str(ROOT / "sample_models" / "lenet_xavier.onnx"))
    source = numpy_helper.to_array(next(t for t in sample.graph.initializer if t.name == planted["a"]))
    expected = source.astype(np.float64)
    expected[channel] *= damage["by"]
    np.testing.assert_allclose(a, expected, rtol=1e-6)  # A is the sample model with the one channel ×50
    codes = initializers(pair["b"])[planted["b"]]
    node, _ = _reader(pair["b"], planted["b"])
    assert initializers(pair["b"])[node.input[1]].ndim == 0  # one scale for the whole tensor
    others = np.delete(np.arange(a.shape[0]), channel)
    assert np.abs(codes[channel]).max() == 127
    assert np.abs(codes[others]).max() <= 5  # every other channel in a handful of codes
    b = dequantized(pair["b"], planted["b"])
    worst = min(sqnr_db(a[c], b[c]) for c in others)
    # measured: 13.0 dB for the worst channel (healthy int8: 48 dB), 36.0 dB for the whole layer, which the
    # outlier channel dominates and so hides the crushed ones
    assert worst < 20.0 and sqnr_db(a, b) > HEALTHY_SQNR[8]
    for layer in pair["layers"]:
        if layer["a"] != planted["a"]:
            assert sqnr_db(initializers(pair["a"])[layer["a"]], as_in_a(pair, layer)) > HEALTHY_SQNR[_bits(pair, layer)], layer


# --- exports, fine-tunes, folds, one-sided layers ----------------------------------------------------

@pytest.mark.parametrize("name", by_kind("export", damaged=False))
def test_an_export_pair_holds_the_same_weights(name):
    pair = PAIRS[name]
    a, b = initializers(pair["a"]), initializers(pair["b"])
    for layer in pair["layers"]:
        np.testing.assert_allclose(a[layer["a"]], b[layer["b"]], rtol=1e-4, atol=1e-6)


def _relative_change(pair: dict, layer: dict) -> float:
    a = initializers(pair["a"])[layer["a"]].astype(np.float64)
    b = initializers(pair["b"])[layer["b"]].astype(np.float64)
    return float(np.linalg.norm(b - a) / np.linalg.norm(a))


@pytest.mark.parametrize("name", by_kind("finetune"))
def test_a_finetune_moves_every_layer_but_as_planted(name):
    pair = PAIRS[name]
    (planted,) = pair["planted"]
    change = {layer["a"]: _relative_change(pair, layer) for layer in pair["layers"]}
    others = [c for layer, c in change.items() if layer != planted["a"]]
    assert all(0.03 < c < 0.15 for c in others), change
    if planted["problem"] == "unchanged":
        a, b = model(pair["a"]), model(pair["b"])
        stored_a = next(t for t in a.graph.initializer if t.name == planted["a"])
        stored_b = next(t for t in b.graph.initializer if t.name == planted["b"])
        assert numpy_helper.to_array(stored_a).tobytes() == numpy_helper.to_array(stored_b).tobytes()
    else:
        assert change[planted["a"]] > 10 * float(np.median(others))


@pytest.mark.parametrize("name", by_kind("folded"))
def test_a_folded_batchnorm_is_w_times_gamma_over_sigma(name):
    pair = PAIRS[name]
    a, b = initializers(pair["a"]), initializers(pair["b"])
    folded = 0
    for layer in pair["layers"]:
        conv, _ = _reader(pair["a"], layer["a"])
        bn, _ = _reader(pair["a"], conv.output[0])
        if bn is None or bn.op_type != "BatchNormalization":
            np.testing.assert_array_equal(a[layer["a"]], b[layer["b"]])
            continue
        folded += 1
        gamma, beta, mean, var = (a[n].astype(np.float64) for n in bn.input[1:5])
        eps = next(attr.f for attr in bn.attribute if attr.name == "epsilon")
        factor = gamma / np.sqrt(var + eps)
        np.testing.assert_allclose(b[layer["b"]], a[layer["a"]] * factor[:, None, None, None], rtol=1e-5, atol=1e-7)
        assert np.ptp(factor) > 0.5  # a BatchNorm that really rescales, channel by channel
        b_conv, _ = _reader(pair["b"], layer["b"])
        bias = a[conv.input[2]].astype(np.float64) if len(conv.input) > 2 else 0.0
        np.testing.assert_allclose(b[b_conv.input[2]], (bias - mean) * factor + beta, rtol=1e-5, atol=1e-6)
    assert folded == 2
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    out_a = ReferenceEvaluator(model(pair["a"])).run(None, {"input": x})[0]
    out_b = ReferenceEvaluator(model(pair["b"])).run(None, {"input": x})[0]
    np.testing.assert_allclose(out_b, out_a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in PAIRS if any(p["problem"].startswith("only") for p in PAIRS[n]["planted"])])
def test_a_one_sided_layer_is_missing_from_the_other_side(name):
    pair = PAIRS[name]
    (planted,) = pair["planted"]
    a, b = initializers(pair["a"]), initializers(pair["b"])
    if planted["problem"] == "only_in_a":
        assert planted["a"] not in b and _reader(pair["a"], planted["a"])[0].op_type == "Conv"
    else:
        assert planted["b"] not in a and _reader(pair["b"], planted["b"])[0].op_type == "Conv"
    for layer in pair["layers"]:
        np.testing.assert_array_equal(a[layer["a"]], b[layer["b"]])
    sides = [ReferenceEvaluator(model(pair[s])) for s in ("a", "b")]
    x = np.random.default_rng(0).standard_normal((1, 16, 8, 8)).astype(np.float32)
    shapes = [s.run(None, {model(pair["a"]).graph.input[0].name: x})[0].shape for s in sides]
    assert shapes[0] == shapes[1]  # both still run, to the same output shape
