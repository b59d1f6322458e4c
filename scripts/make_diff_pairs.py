#!/usr/bin/env python3
"""Regenerate tests/fixtures/diff/: pairs of models for ``initaudit diff A B``, and pairs.json, what each
pair holds.

Needs ``pip install onnxruntime onnx_ir`` (onnxruntime's quantizers; onnx_ir for its MatMulNBits
quantizer) besides onnx and numpy; no torch, no network. The sources are committed fixtures: the PyTorch exports of
tests/fixtures/torch/ (both exporters, the same weights; scripts/make_torch_fixtures.py) and
sample_models/lenet_xavier.onnx. Run from anywhere:

    python scripts/make_diff_pairs.py

It rewrites the folder from scratch (1.7 MB, 32 files, 25 pairs; a few seconds), with fixed seeds: two
runs write the same bytes. The quantized files depend on the onnxruntime release (the names of the
tensors it writes, its rounding), so pairs.json records it (made with 1.32.0). Checked by
tests/test_diff_pairs.py with onnx and numpy only.

Each pair is A → B, of one of four kinds:

* ``quantized``: B is A quantized by onnxruntime (static QDQ per-channel and per-tensor int8, dynamic
  ConvInteger/MatMulInteger, MatMulNBits 4-bit): healthy, or with exactly one layer damaged in B after
  quantization (a weight scale ×4 or ÷4, a zero point shifted by 40 codes), or quantized per tensor from
  an A whose one output channel was made 50× larger (every other channel of that layer is crushed to a
  few codes);
* ``export``: the same weights exported by the legacy (TorchScript) and the dynamo exporter;
* ``finetune``: every float tensor of A moved by noise N(0, (0.05·rms)²) plus, for matrices and kernels,
  a rank-2 update of 0.05·‖W‖, except one layer left bit-identical, or one layer moved 20× more;
* ``folded``: A has Conv → BatchNormalization (non-trivial γ, β, running mean and variance), B has the
  BatchNorm folded into the Conv's weight and bias;
* a layer on one side only (kind ``export``: a new release of the same model): B is A with one layer
  removed, or with one added.

``planted`` is what the script did, never what a tool measured: ``quantization_damage`` (wrong scale,
shifted zero point, crushed channels), ``unchanged``, ``changed_far_more``, ``only_in_a``, ``only_in_b``;
``a`` and ``b`` are the stored tensors in A and in B (B's is the initializer holding that layer's values:
``conv2.weight_quantized``, ``onnx::MatMul_205_Q4``; null on the side the layer is missing from).
``layers`` (beyond what the issue asked) lists every weight of a Conv, Gemm or MatMul in A with the
tensor that holds the same layer in B, known from what was done (the quantizers' naming, the folding,
for exports the values themselves), and ``transposed`` when B stores it transposed (dynamic
quantization of a Gemm; MatMulNBits' [N, K] blocks of a [K, N] MatMul weight). ``renamed`` is true
when some layer's B name, without a quantizer's suffix (``_quantized``, ``_Transposed_quantized``,
``_Q4``), is not A's name. ``damage`` says what was done to a damaged quantized file (the tensor, the
factor or the shift, the healthy file it was copied from); ``output_change`` is ‖out_B − out_A‖ / ‖out_A‖
on one fixed standard-normal input, run by onnxruntime (context for thresholds, not a planted fact).
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

ROOT = Path(__file__).resolve().parent.parent
TORCH = ROOT / "tests" / "fixtures" / "torch"
SAMPLES = ROOT / "sample_models"
OUT = ROOT / "tests" / "fixtures" / "diff"

#: Float sources copied into the folder: file name there → (source, calibration input shape).
SOURCES = {
    "lenet.legacy.onnx": (TORCH / "lenet_default.legacy.onnx", (1, 3, 32, 32)),
    "lenet.dynamo.onnx": (TORCH / "lenet_default.dynamo.onnx", (1, 3, 32, 32)),
    "encoder.legacy.onnx": (TORCH / "encoder_default.legacy.onnx", (1, 6, 16)),
    "encoder.dynamo.onnx": (TORCH / "encoder_default.dynamo.onnx", (1, 6, 16)),
    "resblock.legacy.onnx": (TORCH / "resblock_kaiming.legacy.onnx", (1, 16, 8, 8)),
    "resblock.dynamo.onnx": (TORCH / "resblock_kaiming.dynamo.onnx", (1, 16, 8, 8)),
    "separable.legacy.onnx": (TORCH / "separable_xavier.legacy.onnx", (1, 16, 8, 8)),
}
OUTLIER_SOURCE = SAMPLES / "lenet_xavier.onnx"
WEIGHT_OPS = {"Conv": 1, "Gemm": 1, "MatMul": 1}
QUANTIZER_SUFFIXES = ("_Transposed_quantized", "_quantized", "_Q4")
ZERO_POINT_SHIFT = 40
SCALE_FACTOR = 4.0
OUTLIER_FACTOR = 50.0
FINETUNE_RELATIVE = 0.05
FAR_MORE = 20.0
EPSILON = 1e-5                     # the BatchNorms' ε
CONVBN_INPUT = (1, 3, 16, 16)


@dataclass
class Planted:
    a: str | None
    b: str | None
    problem: str


@dataclass
class Layer:
    a: str
    b: str
    transposed: bool = False


@dataclass
class Damage:
    """What was done to B's one damaged layer: ``tensor`` scaled (``by``: the factor) or shifted (codes),
    after quantizing (``healthy``: the same quantized file before, when the folder holds it), or A's
    ``channel`` of the layer made ``by``× larger before quantizing per tensor (``outlier``)."""

    op: str                      # "scale" | "shift" | "outlier"
    tensor: str
    by: float
    healthy: str | None = None
    channel: int | None = None


@dataclass
class Pair:
    name: str
    a: str
    b: str
    kind: str
    how: str
    planted: list[Planted] = field(default_factory=list)
    renamed: bool = False
    layers: list[Layer] = field(default_factory=list)
    damage: Damage | None = None
    output_change: float | None = None   # ‖out_B − out_A‖ / ‖out_A‖, onnxruntime, one fixed random input


# --- reading and writing initializers ---------------------------------------------------------------

def load(name: str) -> onnx.ModelProto:
    return onnx.load(str(OUT / name))


def save(model: onnx.ModelProto, name: str) -> None:
    onnx.checker.check_model(model)
    onnx.save(model, str(OUT / name))


def initializer(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    found = [t for t in model.graph.initializer if t.name == name]
    if len(found) != 1:
        raise KeyError(f"{name!r}: {len(found)} initializers of that name")
    return found[0]


def values(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(initializer(model, name))


def replace(model: onnx.ModelProto, name: str, array: np.ndarray) -> None:
    """Overwrite one initializer's values, keeping its name, shape and element type."""
    old = initializer(model, name)
    new = numpy_helper.from_array(array.astype(numpy_helper.to_array(old).dtype).reshape(tuple(old.dims)), name)
    old.CopyFrom(new)


def weight_names(model: onnx.ModelProto) -> list[str]:
    """Initializers read as the weight input of a Conv, Gemm or MatMul, in node order."""
    inits = {t.name for t in model.graph.initializer}
    found: list[str] = []
    for node in model.graph.node:
        index = WEIGHT_OPS.get(node.op_type)
        if index is not None and len(node.input) > index and node.input[index] in inits:
            if node.input[index] not in found:
                found.append(node.input[index])
    return found


def base_name(name: str) -> str:
    for suffix in QUANTIZER_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def renamed(layers: list[Layer]) -> bool:
    return any(base_name(layer.b) != layer.a for layer in layers)


# --- quantizing ---------------------------------------------------------------------------------------

class RandomInputs(CalibrationDataReader):
    def __init__(self, name: str, shape: tuple[int, ...], count: int = 8) -> None:
        rng = np.random.default_rng(0)
        self.batches = iter([{name: rng.standard_normal(shape).astype(np.float32)} for _ in range(count)])

    def get_next(self):
        return next(self.batches, None)


def calibration_shape(source: str) -> tuple[int, ...]:
    """The input shape of the source a file was made from (``lenet_xavier.outlier.onnx``: lenet's)."""
    stem = source.split(".")[0].split("_")[0]
    if stem == "convbn":
        return CONVBN_INPUT
    return next(shape for name, (_, shape) in SOURCES.items() if name.startswith(stem + "."))


def static(source: str, target: str, per_channel: bool) -> None:
    input_name = load(source).graph.input[0].name
    quantize_static(str(OUT / source), str(OUT / target), RandomInputs(input_name, calibration_shape(source)),
                    quant_format=QuantFormat.QDQ, per_channel=per_channel, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8)


def dynamic(source: str, target: str, weight_type: QuantType = QuantType.QInt8) -> None:
    quantize_dynamic(str(OUT / source), str(OUT / target), weight_type=weight_type)


def nbits(source: str, target: str, block_size: int, symmetric: bool) -> None:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    quantizer = MatMulNBitsQuantizer(load(source), block_size=block_size, is_symmetric=symmetric)
    quantizer.process()
    quantizer.model.save_model_to_file(str(OUT / target))


def quantized_layers(source: str, target: str) -> list[Layer]:
    """A's weights and the initializer holding each in B, from onnxruntime's naming."""
    a, b = load(source), load(target)
    held = {t.name for t in b.graph.initializer}
    layers = []
    for name in weight_names(a):
        for suffix, transposed in (("_quantized", False), ("_Transposed_quantized", True), ("_Q4", True),
                                   ("", False)):
            if name + suffix in held:
                layers.append(Layer(name, name + suffix, transposed))
                break
        else:
            raise KeyError(f"{target}: no tensor holds {source}'s {name!r}")
    return layers


def layer_b(layers: list[Layer], a_name: str) -> str:
    return next(layer.b for layer in layers if layer.a == a_name)


# --- the pairs ----------------------------------------------------------------------------------------

def copy_sources() -> None:
    for name, (source, _) in SOURCES.items():
        shutil.copyfile(source, OUT / name)


def healthy_quantized() -> list[Pair]:
    pairs = []
    ort = f"onnxruntime {onnxruntime.__version__}"
    for stem in ("lenet", "encoder"):
        source = f"{stem}.legacy.onnx"
        for per_channel, tag in ((True, "per_channel"), (False, "per_tensor")):
            target = f"{stem}.qdq_{tag}.onnx"
            static(source, target, per_channel)
            pairs.append(Pair(f"{stem}_qdq_{tag}", source, target, "quantized",
                              f"{ort} quantize_static QDQ {tag.replace('_', '-')} int8 weights, uint8 "
                              "activations, 8 random-normal calibration batches"))
        target = f"{stem}.dynamic.onnx"
        dynamic(source, target)
        pairs.append(Pair(f"{stem}_dynamic", source, target, "quantized",
                          f"{ort} quantize_dynamic int8 weights (ConvInteger / MatMulInteger; Gemm weights "
                          "stored transposed)"))
    for block, symmetric in ((16, False), (32, True)):
        target = f"encoder.nbits{block}.onnx"
        nbits("encoder.legacy.onnx", target, block, symmetric)
        pairs.append(Pair(f"encoder_nbits{block}", "encoder.legacy.onnx", target, "quantized",
                          f"{ort} MatMulNBitsQuantizer 4-bit, block {block}, "
                          f"{'symmetric' if symmetric else 'asymmetric'} (MatMul weights only; the Gemm "
                          "stays float)"))
    for pair in pairs:
        pair.layers = quantized_layers(pair.a, pair.b)
        pair.renamed = renamed(pair.layers)
    return pairs


def scale_tensor(target: str, name: str, factor: float) -> None:
    model = load(target)
    replace(model, name, values(model, name).astype(np.float64) * factor)
    save(model, target)


def shift_zero_point(target: str, name: str, codes: int) -> None:
    model = load(target)
    zero_point = values(model, name)
    info = np.iinfo(zero_point.dtype)
    shifted = zero_point.astype(np.int64) + codes
    if shifted.min() < info.min or shifted.max() > info.max:
        raise ValueError(f"{name}: zero point {zero_point} shifted by {codes} leaves {zero_point.dtype}")
    replace(model, name, shifted)
    save(model, target)


def damaged(source: str, target: str, made: str, healthy: str | None, layer: str, damage: Damage,
            pair_name: str) -> Pair:
    """Copy the healthy quantized ``healthy`` (or quantize ``source`` afresh) into ``target``, then damage
    ``layer`` there as ``damage`` says."""
    if healthy is not None:
        shutil.copyfile(OUT / healthy, OUT / target)
    else:
        dynamic(source, target, QuantType.QUInt8)
    if damage.op == "scale":
        scale_tensor(target, damage.tensor, damage.by)
        did = f"{damage.tensor} ×{damage.by:g} (its dequantized values {damage.by:g}× A's)"
    else:
        shift_zero_point(target, damage.tensor, int(damage.by))
        did = f"{damage.tensor} shifted by {int(damage.by):+d} codes"
    damage.healthy = healthy
    layers = quantized_layers(source, target)
    return Pair(pair_name, source, target, "quantized", f"{made}; then {did}",
                [Planted(layer, layer_b(layers, layer), "quantization_damage")], renamed(layers), layers, damage)


def damaged_quantized() -> list[Pair]:
    ort = f"onnxruntime {onnxruntime.__version__}"
    per_channel, per_tensor = f"{ort} quantize_static QDQ per-channel int8", f"{ort} quantize_static QDQ per-tensor int8"
    return [
        damaged("lenet.legacy.onnx", "lenet.qdq_per_channel.wrong_scale.onnx", per_channel,
                "lenet.qdq_per_channel.onnx", "conv2.weight", Damage("scale", "conv2.weight_scale", SCALE_FACTOR),
                "lenet_qdq_wrong_scale"),
        damaged("encoder.legacy.onnx", "encoder.qdq_per_tensor.wrong_scale.onnx", per_tensor,
                "encoder.qdq_per_tensor.onnx", "layer.self_attn.out_proj.weight",
                Damage("scale", "layer.self_attn.out_proj.weight_scale", 1 / SCALE_FACTOR), "encoder_qdq_wrong_scale"),
        damaged("encoder.legacy.onnx", "encoder.nbits16.wrong_scale.onnx",
                f"{ort} MatMulNBitsQuantizer 4-bit block 16 asymmetric", "encoder.nbits16.onnx", "onnx::MatMul_205",
                Damage("scale", "onnx::MatMul_205_scales", SCALE_FACTOR), "encoder_nbits_wrong_scale"),
        damaged("lenet.legacy.onnx", "lenet.qdq_per_channel.zero_point.onnx", per_channel,
                "lenet.qdq_per_channel.onnx", "fc2.weight", Damage("shift", "fc2.weight_zero_point", ZERO_POINT_SHIFT),
                "lenet_qdq_zero_point"),
        damaged("encoder.legacy.onnx", "encoder.dynamic_uint8.zero_point.onnx",
                f"{ort} quantize_dynamic uint8 weights (MatMulInteger)", None, "onnx::MatMul_166",
                Damage("shift", "onnx::MatMul_166_zero_point", -ZERO_POINT_SHIFT), "encoder_dynamic_zero_point"),
        outlier_channel(ort),
    ]


def outlier_channel(ort: str, layer: str = "conv2.weight", channel: int = 5) -> Pair:
    """A: lenet_xavier with one output channel of ``layer`` 50× larger; B: A quantized per tensor."""
    source, target = "lenet_xavier.outlier.onnx", "lenet_xavier.outlier.qdq_per_tensor.onnx"
    model = onnx.load(str(OUTLIER_SOURCE))
    weight = values(model, layer).astype(np.float64)
    weight[channel] *= OUTLIER_FACTOR
    replace(model, layer, weight)
    save(model, source)
    static(source, target, False)
    layers = quantized_layers(source, target)
    how = (f"A: sample_models/lenet_xavier.onnx with output channel {channel} of {layer} ×{OUTLIER_FACTOR:g}; "
           f"B: A by {ort} quantize_static QDQ per-tensor int8 (the one scale crushes the other channels)")
    return Pair("lenet_outlier_per_tensor", source, target, "quantized", how,
                [Planted(layer, layer_b(layers, layer), "quantization_damage")], renamed(layers), layers,
                Damage("outlier", layer, OUTLIER_FACTOR, channel=channel))


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-4, atol=1e-6))


def export_pairs() -> list[Pair]:
    pairs = []
    for stem in ("lenet", "encoder", "resblock"):
        a_name, b_name = f"{stem}.legacy.onnx", f"{stem}.dynamo.onnx"
        a, b = load(a_name), load(b_name)
        layers = []
        for name in weight_names(a):
            same = [other for other in weight_names(b) if same_values(values(a, name), values(b, other))]
            if len(same) != 1:
                raise ValueError(f"{stem}: {name!r} has {len(same)} equal weights in the dynamo export")
            layers.append(Layer(name, same[0]))
        pairs.append(Pair(f"{stem}_export", a_name, b_name, "export",
                          "the same torch weights exported by torch.onnx.export(dynamo=False, opset 17) and "
                          "(dynamo=True): scripts/make_torch_fixtures.py", [], renamed(layers), layers))
    return pairs


def perturbed(array: np.ndarray, rng: np.random.Generator, factor: float) -> np.ndarray:
    """``array`` + N(0, (0.05·rms)²) per value, + a rank-2 update of 0.05·‖W‖ for matrices and kernels."""
    w = array.astype(np.float64)
    rms = float(np.sqrt(np.mean(w * w))) or 1.0
    out = w + rng.normal(0.0, FINETUNE_RELATIVE * rms * factor, w.shape)
    if w.ndim >= 2:
        flat = w.reshape(w.shape[0], -1)
        update = rng.standard_normal((flat.shape[0], 2)) @ rng.standard_normal((2, flat.shape[1]))
        update *= FINETUNE_RELATIVE * factor * np.linalg.norm(flat) / np.linalg.norm(update)
        out += update.reshape(w.shape)
    return out


def finetune(source: str, target: str, frozen: tuple[str, ...], far_more: tuple[str, ...], seed: int) -> None:
    model = load(source)
    rng = np.random.default_rng(seed)
    for tensor in model.graph.initializer:
        if tensor.data_type != TensorProto.FLOAT or tensor.name in frozen:
            continue
        replace(model, tensor.name, perturbed(numpy_helper.to_array(tensor), rng,
                                              FAR_MORE if tensor.name in far_more else 1.0))
    save(model, target)


def finetune_pairs() -> list[Pair]:
    how = ("every float tensor + N(0, (0.05·rms)²) per value, matrices and kernels + a rank-2 update of "
           "0.05·‖W‖; ")
    specs = [
        ("encoder", ("onnx::MatMul_205", "layer.linear1.bias"), (), "linear1 (weight and bias) left bit-identical"),
        ("encoder", (), ("layer.self_attn.out_proj.weight",), "out_proj.weight moved 20× more"),
        ("separable", ("pointwise.weight", "pointwise.bias"), (), "pointwise (weight and bias) left bit-identical"),
        ("separable", (), ("grouped.weight",), "grouped.weight moved 20× more"),
    ]
    pairs = []
    for seed, (stem, frozen, far_more, what) in enumerate(specs):
        source = f"{stem}.legacy.onnx"
        tag = "unchanged" if frozen else "changed_far_more"
        target = f"{stem}.finetune_{tag}.onnx"
        finetune(source, target, frozen, far_more, seed)
        weights = set(weight_names(load(source)))
        planted = [Planted(name, name, tag) for name in frozen + far_more if name in weights]
        layers = [Layer(name, name) for name in weight_names(load(source))]
        pairs.append(Pair(f"{stem}_finetune_{tag}", source, target, "finetune", how + what, planted, False, layers))
    return pairs


# --- Conv → BatchNormalization, folded -------------------------------------------------------------



def convbn_model(rng: np.random.Generator) -> tuple[onnx.ModelProto, onnx.ModelProto, list[tuple[str, str]]]:
    """A: two Conv → BatchNormalization → Relu blocks and a Gemm head; B: the BatchNorms folded."""
    convs = [("conv1", 3, 8, True), ("conv2", 8, 16, False)]
    a_nodes, b_nodes, a_inits, b_inits, names = [], [], [], [], []
    x = "input"
    for index, (name, cin, cout, bias) in enumerate(convs):
        w = rng.normal(0.0, np.sqrt(2.0 / (cin * 9)), (cout, cin, 3, 3))
        b = rng.normal(0.0, 0.05, cout) if bias else np.zeros(cout)
        gamma, beta = rng.uniform(0.5, 2.0, cout), rng.normal(0.0, 0.2, cout)
        mean, var = rng.normal(0.0, 0.3, cout), rng.uniform(0.3, 3.0, cout)
        factor = gamma / np.sqrt(var + EPSILON)
        folded_w, folded_b = w * factor[:, None, None, None], (b - mean) * factor + beta
        conv_inputs = [x, f"{name}.weight"] + ([f"{name}.bias"] if bias else [])
        a_inits += [numpy_helper.from_array(w.astype(np.float32), f"{name}.weight")]
        if bias:
            a_inits += [numpy_helper.from_array(b.astype(np.float32), f"{name}.bias")]
        bn = f"bn{index + 1}"
        a_inits += [numpy_helper.from_array(v.astype(np.float32), f"{bn}.{k}")
                    for k, v in (("weight", gamma), ("bias", beta), ("running_mean", mean), ("running_var", var))]
        a_nodes += [helper.make_node("Conv", conv_inputs, [f"{name}_out"], name=f"/{name}/Conv", pads=[1, 1, 1, 1]),
                    helper.make_node("BatchNormalization", [f"{name}_out"] + [f"{bn}.{k}" for k in
                                     ("weight", "bias", "running_mean", "running_var")], [f"{bn}_out"],
                                     name=f"/{bn}/BatchNormalization", epsilon=EPSILON),
                    helper.make_node("Relu", [f"{bn}_out"], [f"relu{index + 1}"], name=f"/Relu_{index}")]
        b_inits += [numpy_helper.from_array(folded_w.astype(np.float32), f"{name}.weight"),
                    numpy_helper.from_array(folded_b.astype(np.float32), f"{name}.bias")]
        b_nodes += [helper.make_node("Conv", [x, f"{name}.weight", f"{name}.bias"], [f"{name}_out"],
                                     name=f"/{name}/Conv", pads=[1, 1, 1, 1]),
                    helper.make_node("Relu", [f"{name}_out"], [f"relu{index + 1}"], name=f"/Relu_{index}")]
        names.append((f"{name}.weight", f"{name}.bias"))
        x = f"relu{index + 1}"
    head_w, head_b = rng.normal(0.0, np.sqrt(2.0 / 26), (10, 16)), rng.normal(0.0, 0.05, 10)
    head = [numpy_helper.from_array(head_w.astype(np.float32), "fc.weight"),
            numpy_helper.from_array(head_b.astype(np.float32), "fc.bias")]
    tail = [helper.make_node("GlobalAveragePool", [x], ["pooled"], name="/pool/GlobalAveragePool"),
            helper.make_node("Flatten", ["pooled"], ["flat"], name="/Flatten"),
            helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="/fc/Gemm", transB=1)]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(CONVBN_INPUT))]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])]

    def model(nodes: list, inits: list, graph_name: str) -> onnx.ModelProto:
        graph = helper.make_graph(nodes + tail, graph_name, inputs, outputs, inits + head)
        built = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="make_diff_pairs")
        built.ir_version = 8
        return built

    return model(a_nodes, a_inits, "convbn"), model(b_nodes, b_inits, "convbn_folded"), names


def rename(model: onnx.ModelProto, mapping: dict[str, str]) -> None:
    """Rename initializers and every node input that reads them (as the legacy exporter names folds)."""
    for tensor in model.graph.initializer:
        tensor.name = mapping.get(tensor.name, tensor.name)
    for node in model.graph.node:
        node.input[:] = [mapping.get(name, name) for name in node.input]


def folded_pairs() -> list[Pair]:
    a, b, names = convbn_model(np.random.default_rng(22))
    save(a, "convbn.onnx")
    save(b, "convbn.folded.onnx")
    how = ("Conv → BatchNormalization (γ U(0.5, 2), β N(0, 0.2²), running mean N(0, 0.3²), var U(0.3, 3), "
           "ε 1e-5) → Relu ×2, Gemm head (onnx.helper); B: the BatchNorm folded into the Conv, "
           "W' = W·γ/√(var+ε) per output channel, b' = (b − mean)·γ/√(var+ε) + β (float64, stored float32)")
    weights = [w for w, _ in names] + ["fc.weight"]
    pairs = [Pair("convbn_folded", "convbn.onnx", "convbn.folded.onnx", "folded", how, [], False,
                  [Layer(w, w) for w in weights])]
    mapping = {tensor: f"onnx::Conv_{30 + 3 * i + j}" for i, pair in enumerate(names) for j, tensor in enumerate(pair)}
    rename(b, mapping)
    save(b, "convbn.folded_renamed.onnx")
    pairs.append(Pair("convbn_folded_renamed", "convbn.onnx", "convbn.folded_renamed.onnx", "folded",
                      how + "; folded tensors renamed onnx::Conv_NN as the legacy exporter names them", [], True,
                      [Layer(w, mapping.get(w, w)) for w in weights]))
    return pairs


# --- a layer on one side only ----------------------------------------------------------------------

def only_pairs() -> list[Pair]:
    """separable.legacy: depthwise → pointwise → grouped → Relu → multiplier (grouped keeps 32 channels)."""
    source = "separable.legacy.onnx"
    model = load(source)
    grouped = next(n for n in model.graph.node if "grouped.weight" in n.input)
    after = [n for n in model.graph.node if grouped.output[0] in n.input]
    for node in after:
        node.input[:] = [grouped.input[0] if name == grouped.output[0] else name for name in node.input]
    model.graph.node.remove(grouped)
    for name in ("grouped.weight", "grouped.bias"):
        model.graph.initializer.remove(initializer(model, name))
    save(model, "separable.removed.onnx")
    kept = [w for w in weight_names(load(source)) if w != "grouped.weight"]
    removed = Pair("separable_layer_removed", source, "separable.removed.onnx", "export",
                   "B: A with the grouped 3×3 Conv (32→32, groups 4) and its tensors removed, its input wired to "
                   "its reader", [Planted("grouped.weight", None, "only_in_a")], False,
                   [Layer(w, w) for w in kept])

    model = load(source)
    index = next(i for i, n in enumerate(model.graph.node) if "grouped.weight" in n.input)
    grouped = model.graph.node[index]
    rng = np.random.default_rng(23)
    extra_w = rng.normal(0.0, np.sqrt(2.0 / 64), (32, 32, 1, 1)).astype(np.float32)
    model.graph.initializer.extend([numpy_helper.from_array(extra_w, "extra.weight"),
                                    numpy_helper.from_array(np.zeros(32, np.float32), "extra.bias")])
    old_out = grouped.output[0]
    for node in model.graph.node:
        node.input[:] = ["/extra/Conv_output_0" if name == old_out else name for name in node.input]
    model.graph.node.insert(index + 1, helper.make_node("Conv", [old_out, "extra.weight", "extra.bias"],
                                                       ["/extra/Conv_output_0"], name="/extra/Conv"))
    save(model, "separable.added.onnx")
    added = Pair("separable_layer_added", source, "separable.added.onnx", "export",
                 "B: A with an extra 1×1 Conv 32→32 (Xavier-normal weight, zero bias) after the grouped Conv",
                 [Planted(None, "extra.weight", "only_in_b")], False,
                 [Layer(w, w) for w in weight_names(load(source))])
    return [removed, added]


def output_change(pair: Pair) -> float:
    """How far B's output is from A's on one fixed standard-normal input (onnxruntime, CPU)."""
    x = np.random.default_rng(1).standard_normal(calibration_shape(pair.a)).astype(np.float32)
    outputs = []
    for name in (pair.a, pair.b):
        session = onnxruntime.InferenceSession(str(OUT / name), providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {session.get_inputs()[0].name: x})[0].astype(np.float64))
    return round(float(np.linalg.norm(outputs[1] - outputs[0]) / np.linalg.norm(outputs[0])), 6)


def main() -> None:
    logging.disable(logging.WARNING)  # onnxruntime's quantizers log every node and advise pre-processing
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    copy_sources()
    pairs = (healthy_quantized() + damaged_quantized() + export_pairs() + finetune_pairs() + folded_pairs()
             + only_pairs())
    for pair in pairs:
        pair.output_change = output_change(pair)
    folded = [pair.output_change for pair in pairs if pair.kind == "folded"]
    if max(folded) > 1e-5:
        raise AssertionError(f"folding the BatchNorm changed the output: {folded}")
    manifest = {"generator": "scripts/make_diff_pairs.py", "onnxruntime": onnxruntime.__version__,
                "onnx": onnx.__version__, "pairs": [asdict(pair) for pair in pairs]}
    (OUT / "pairs.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{len(pairs)} pairs, {len(list(OUT.iterdir()))} files, {total / 1e6:.2f} MB in {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
