"""Plant one defect per copy of published trained models, in every storage type, and tally what the trained review finds.

    python scripts/fetch_published_models.py            # once: models into ~/.cache/initaudit-published
    python scripts/plant_defects.py [--models DIR] [--layers N] [--storage S …] [--json OUT]

Storage types (``--storage``, default all four): each float model as published (``float32``); a copy whose
weights are stored in float16, each read through a Cast to float (``float16``); copies quantized by
onnxruntime's ``quantize_static`` (QDQ format, int8 symmetric weights, uint8 activations, two random
calibration inputs) per output channel (``int8-axis``) and per tensor (``int8-tensor``).  Models that
already hold quantized or float16 weights are audited as they are (healthy counts) but not planted in.
onnxruntime is needed by this script only (``pip install onnxruntime``), not by initaudit.

1. Healthy models, ``--profile trained`` (and ``--fp16``), per storage type: fail count and warn share
   over all layers, every warn listed with its codes, and the largest |mean|/σ of a layer with several
   output units and of a layer with one (what IA204's trained thresholds are held against).
2. For N mid-sized layers per model stored in that type (the layers at the quantiles 1/(N+1) … N/(N+1) of
   size among Conv / ConvTranspose / Gemm / MatMul / LSTM / GRU weights of ≥ 4096 values, ok in the
   healthy model), one copy of the model per defect, planted in what the file stores (float values, or
   int8 codes with their DequantizeLinear scale and zero point):

   torch_default   values re-drawn from U(±1/√fan_in), fan_in as PyTorch counts it      → IA401
   normal_0.02     values re-drawn from N(0, 0.02) (Hugging Face's _init_weights)         → IA401
   dead_quarter    a quarter of the output units (the tracer's 'O' axis) set to zero:
                   int8 codes equal to the zero point                                     → IA402
   nan             one value NaN; int8: one channel's scale NaN (per tensor: the scale)   → IA201, fail
   big             one value set to 1e5, audited with --fp16; float16 stores it as inf     → IA206 (float16: IA201)
   offset_0.5 / offset_1 / offset_3
                   0.5, 1, 3 σ (the layer's σ) added to every value                       → IA204
   zp+1 / zp+8     int8: every zero point 1 (8) codes too low, values shifted by +1 (8) steps
   uint8_zp0       int8: the codes stored as uint8 (q + 128) and read with zero point 0
                   instead of 128, values shifted by +128 steps                           → IA204
   channel_zp+8 / channel_zp+128
                   int8 per channel: one channel's zero point 8 (128) codes too low        → IA204

   A re-drawn, offset or 1e5 layer of an int8 model is re-quantized as onnxruntime quantizes weights
   (symmetric, per channel or per tensor, scale = max|w| / 127, zero point kept).

   One damaged copy for a look of one's own (the worked example in docs/trained-review.md):
   python scripts/plant_defects.py --copy MODEL LAYER DEFECT OUT.onnx [--seed 0]

   A copy counts as detected when the damaged layer is warn or fail (fail for nan) with that code, and
   no other layer's status differs from the healthy model's.  The copies and the converted models are
   written to a temporary folder and deleted.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import initaudit
from initaudit.report.model import ModelReport

DEFAULT_MODELS = Path.home() / ".cache" / "initaudit-published" / "models"
OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU"}
STORAGES = ("float32", "float16", "int8-axis", "int8-tensor")
#: The initaudit dtype of a layer stored in that type.
DTYPE = {"float32": "float", "float16": "float16", "int8-axis": "int8", "int8-tensor": "int8"}
DEFECTS = {"torch_default": "IA401", "normal_0.02": "IA401", "dead_quarter": "IA402", "nan": "IA201", "big": "IA206",
           "offset_0.5": "IA204", "offset_1": "IA204", "offset_3": "IA204",
           "zp+1": "IA204", "zp+8": "IA204", "uint8_zp0": "IA204", "channel_zp+8": "IA204", "channel_zp+128": "IA204"}
OFFSETS = {"offset_0.5": 0.5, "offset_1": 1.0, "offset_3": 3.0}
ZERO_POINT_SHIFTS = {"zp+1": 1, "zp+8": 8, "uint8_zp0": 128}
CHANNEL_SHIFTS = {"channel_zp+8": 8, "channel_zp+128": 128}
MIN_VALUES = 4096
INT8_MAX = 127


def graphs(graph: onnx.GraphProto):
    """The graph and every subgraph (If/Loop/Scan bodies) below it."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from graphs(attr.g)
            for sub in attr.graphs:
                yield from graphs(sub)


def initializer(model: onnx.ModelProto, name: str) -> onnx.TensorProto | None:
    """The stored tensor called ``name``: an initializer, or the value of a Constant node (PaddleOCR's export)."""
    for graph in graphs(model.graph):
        for tensor in graph.initializer:
            if tensor.name == name:
                return tensor
        for node in graph.node:
            if node.op_type == "Constant" and list(node.output) == [name]:
                for attr in node.attribute:
                    if attr.name == "value":
                        return attr.t
    return None


def dequantizer(model: onnx.ModelProto, name: str) -> onnx.NodeProto | None:
    """The DequantizeLinear node that reads the stored tensor ``name``."""
    for graph in graphs(model.graph):
        for node in graph.node:
            if node.op_type == "DequantizeLinear" and node.input and node.input[0] == name:
                return node
    return None


# --- storage types ---------------------------------------------------------------------------------------------------


def is_plain_float(model: onnx.ModelProto) -> bool:
    """A model published with float32 weights only: no quantized op, no float16 initializer."""
    for graph in graphs(model.graph):
        if any("Quantize" in n.op_type or "Integer" in n.op_type or n.op_type.startswith("QLinear")
               or n.op_type == "MatMulNBits" for n in graph.node):
            return False
        if any(t.data_type == TensorProto.FLOAT16 for t in graph.initializer):
            return False
    return True


def to_float16(model: onnx.ModelProto, names: set[str]) -> onnx.ModelProto:
    """A copy whose float32 weights ``names`` are stored as float16 ``<name>_fp16`` and read through a Cast
    to float, as a model converted for float16 storage keeps them."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for graph in graphs(out.graph):
        casts = []
        for tensor in graph.initializer:
            if tensor.name in names and tensor.data_type == TensorProto.FLOAT:
                values = numpy_helper.to_array(tensor)
                name = tensor.name
                tensor.CopyFrom(numpy_helper.from_array(values.astype(np.float16), f"{name}_fp16"))
                casts.append(helper.make_node("Cast", [f"{name}_fp16"], [name], to=TensorProto.FLOAT))
        nodes = list(graph.node)
        rebuilt = []
        for node in nodes:
            rebuilt.append(node)
            value = next((a for a in node.attribute if a.name == "value"), None)
            if (node.op_type == "Constant" and value is not None and list(node.output)[0] in names
                    and value.t.data_type == TensorProto.FLOAT):
                name = node.output[0]
                value.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(value.t).astype(np.float16)))
                node.output[0] = f"{name}_fp16"
                rebuilt.append(helper.make_node("Cast", [f"{name}_fp16"], [name], to=TensorProto.FLOAT))
        kept_inputs = [i for i in graph.input if i.name not in names]
        del graph.input[:]
        graph.input.extend(kept_inputs)
        del graph.node[:]
        graph.node.extend(casts + rebuilt)
    return out


def constants_as_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose top-level Constant tensors are initializers: onnxruntime's quantizer quantizes only
    initializers (PaddleOCR's exports hold their weights in Constant nodes)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = []
    for node in out.graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            out.graph.initializer.append(tensor)
        else:
            kept.append(node)
    del out.graph.node[:]
    out.graph.node.extend(kept)
    return out


def random_inputs(model: onnx.ModelProto, count: int = 2, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Calibration feeds: static dimensions as declared; an input's first dynamic dimension 1 (the batch),
    the others 512 for a 2-D input (audio samples: silero-vad pads by 64 with reflection) and 64 otherwise;
    float inputs standard normal, ``sr`` (silero-vad's sample rate) 16000, other integers 0…255."""
    rng = np.random.default_rng(seed)
    stored = {t.name for t in model.graph.initializer}
    feeds = []
    for _ in range(count):
        feed = {}
        for value in model.graph.input:
            if value.name in stored:
                continue
            kind = value.type.tensor_type
            dims = list(kind.shape.dim)
            free = [i for i, d in enumerate(dims) if not (d.HasField("dim_value") and d.dim_value > 0)]
            shape = [d.dim_value if i not in free else 1 if i == free[0] else 512 if len(dims) == 2 else 64
                     for i, d in enumerate(dims)]
            dtype = helper.tensor_dtype_to_np_dtype(kind.elem_type)
            if value.name == "sr":
                feed[value.name] = np.full(shape, 16000, dtype)
            elif np.issubdtype(dtype, np.floating):
                feed[value.name] = rng.standard_normal(shape).astype(dtype)
            else:
                feed[value.name] = rng.integers(0, 256, size=shape).astype(dtype)
        feeds.append(feed)
    return feeds


def quantized(source: Path, out: Path, per_channel: bool) -> str | None:
    """Write ``source`` quantized by onnxruntime (static QDQ, int8 weights) to ``out``; the error, if it fails."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    model = constants_as_initializers(onnx.load(str(source)))
    prepared = out.with_suffix(".float.onnx")
    onnx.save(model, str(prepared))
    feeds = iter(random_inputs(model))

    class Feeds(CalibrationDataReader):
        def get_next(self):
            return next(feeds, None)

    try:
        quantize_static(str(prepared), str(out), Feeds(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    except Exception as error:  # noqa: BLE001 - any failure of the quantizer is reported, not fatal
        return f"{type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"
    finally:
        prepared.unlink(missing_ok=True)
    return None


def variant(source: Path, storage: str, folder: Path) -> tuple[Path | None, str | None]:
    """The model ``source`` in ``storage``: (its path, None), or (None, why it was not made)."""
    if storage == "float32":
        return source, None
    out = folder / f"{source.stem}.{storage}.onnx"
    if out.exists():
        return out, None
    model = onnx.load(str(source))
    if storage == "float16":
        names = {layer.name for layer in audit(source).layers if layer.dtype == "float"}
        onnx.save(to_float16(model, names), str(out))
        return out, None
    problem = quantized(source, out, storage == "int8-axis")
    return (None, problem) if problem else (out, None)


# --- one stored weight -----------------------------------------------------------------------------------------------


@dataclass
class Stored:
    """One weight as the file stores it: float values, or integer codes with their DequantizeLinear scale,
    zero point and axis (None: per tensor)."""

    values: onnx.TensorProto
    scale: onnx.TensorProto | None = None
    zero: onnx.TensorProto | None = None
    axis: int | None = None

    @property
    def quantized(self) -> bool:
        return self.scale is not None

    def snapshot(self) -> list[onnx.TensorProto]:
        saved = []
        for tensor in (self.values, self.scale, self.zero):
            copy = TensorProto()
            if tensor is not None:
                copy.CopyFrom(tensor)
            saved.append(copy)
        return saved

    def restore(self, saved: list[onnx.TensorProto]) -> None:
        for tensor, copy in zip((self.values, self.scale, self.zero), saved):
            if tensor is not None:
                tensor.CopyFrom(copy)


def stored(model: onnx.ModelProto, name: str) -> Stored | None:
    """The storage of weight ``name``; None when it is neither float nor read by a DequantizeLinear with
    stored scale and zero point."""
    tensor = initializer(model, name)
    if tensor is None:
        return None
    if tensor.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16):
        return Stored(tensor)
    node = dequantizer(model, name)
    if node is None or len(node.input) < 3:
        return None
    scale, zero = initializer(model, node.input[1]), initializer(model, node.input[2])
    if scale is None or zero is None:
        return None
    axis = None
    if numpy_helper.to_array(scale).size > 1:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        axis %= len(tensor.dims)
    return Stored(tensor, scale, zero, axis)


def _along(array: np.ndarray, axis: int | None, ndim: int) -> np.ndarray:
    """A per-axis parameter shaped to broadcast against the tensor (a scalar as it is)."""
    if axis is None:
        return array.reshape(())
    shape = [1] * ndim
    shape[axis] = array.size
    return array.reshape(shape)


def dequantized(st: Stored) -> np.ndarray:
    """The values the model computes with, in float64."""
    raw = numpy_helper.to_array(st.values)
    if not st.quantized:
        return raw.astype(np.float64)
    assert st.scale is not None and st.zero is not None
    scale = _along(numpy_helper.to_array(st.scale).astype(np.float64), st.axis, raw.ndim)
    zero = _along(numpy_helper.to_array(st.zero).astype(np.float64), st.axis, raw.ndim)
    return (raw.astype(np.float64) - zero) * scale


def quantize(values: np.ndarray, axis: int | None, zero: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 codes, float32 scale) as onnxruntime quantizes a weight: symmetric, scale = max|w| / 127 per
    channel along ``axis`` (per tensor when None; 1 where max|w| = 0), codes round(w / scale) + zero point."""
    reduce = tuple(i for i in range(values.ndim) if i != axis) if axis is not None else None
    peak = np.max(np.abs(values), axis=reduce)
    scale = np.where(peak > 0, peak / INT8_MAX, 1.0).astype(np.float32)
    shaped = _along(scale.astype(np.float64), axis, values.ndim)
    codes = np.rint(values / shaped) + _along(zero.astype(np.float64), axis, values.ndim)
    return np.clip(codes, -INT8_MAX - 1, INT8_MAX).astype(np.int8), scale


def store(st: Stored, values: np.ndarray) -> None:
    """Write float ``values`` in the weight's own storage: cast, or re-quantized with a fresh scale."""
    if not st.quantized:
        dtype = helper.tensor_dtype_to_np_dtype(st.values.data_type)
        with np.errstate(over="ignore", invalid="ignore"):
            st.values.CopyFrom(numpy_helper.from_array(values.astype(dtype), st.values.name))
        return
    assert st.scale is not None and st.zero is not None
    zero = numpy_helper.to_array(st.zero)
    codes, scale = quantize(values, st.axis, zero)
    st.values.CopyFrom(numpy_helper.from_array(codes, st.values.name))
    old_shape = numpy_helper.to_array(st.scale).shape
    st.scale.CopyFrom(numpy_helper.from_array(scale.reshape(old_shape).astype(np.float32), st.scale.name))


def damage(values: np.ndarray, defect: str, layout: str, torch_fan_in: int, rng: np.random.Generator) -> np.ndarray:
    """The float values with ``defect`` (the float defects: re-draws, dead units, NaN, 1e5, offsets)."""
    out = values.astype(np.float64).copy()
    if defect == "torch_default":
        bound = 1.0 / np.sqrt(torch_fan_in)
        out = rng.uniform(-bound, bound, size=out.shape).astype(np.float32).astype(np.float64)
    elif defect == "normal_0.02":
        out = rng.normal(0.0, 0.02, size=out.shape).astype(np.float32).astype(np.float64)
    elif defect == "dead_quarter":
        out[dead_index(out.shape, layout, rng)] = 0.0
    elif defect == "nan":
        out.flat[rng.integers(out.size)] = np.nan
    elif defect == "big":
        out.flat[rng.integers(out.size)] = 1e5
    elif defect in OFFSETS:
        out = out + OFFSETS[defect] * float(np.nanstd(values))
    return out


def dead_index(shape: tuple[int, ...], layout: str, rng: np.random.Generator) -> tuple[object, ...]:
    """The index of a random quarter of the output units (the 'O' axis of the layout)."""
    axis = layout.index("O")
    units = shape[axis]
    chosen = rng.choice(units, size=max(1, units // 4), replace=False)
    index: list[object] = [slice(None)] * len(shape)
    index[axis] = chosen
    return tuple(index)


def applies(defect: str, storage: str) -> bool:
    """Zero-point defects need a zero point; a channel's needs one per channel."""
    if defect in ZERO_POINT_SHIFTS:
        return storage.startswith("int8")
    if defect in CHANNEL_SHIFTS:
        return storage == "int8-axis"
    return True


def expected(defect: str, storage: str) -> tuple[str, tuple[str, ...]]:
    """(the code that names the defect, the statuses that count as caught)."""
    if defect == "nan" or (defect == "big" and storage == "float16"):  # float16 holds 1e5 as inf
        return "IA201", ("fail",)
    return DEFECTS[defect], ("warn", "fail")


def plant(st: Stored, defect: str, layout: str, torch_fan_in: int, rng: np.random.Generator) -> None:
    """Put ``defect`` into the stored weight, in what the file stores."""
    if not st.quantized:
        store(st, damage(dequantized(st), defect, layout, torch_fan_in, rng))
        return
    assert st.scale is not None and st.zero is not None
    codes = numpy_helper.to_array(st.values)
    zero = numpy_helper.to_array(st.zero)
    if defect == "dead_quarter":
        index = dead_index(codes.shape, layout, rng)
        dead = np.broadcast_to(_along(zero, st.axis, codes.ndim), codes.shape)
        codes = codes.copy()
        codes[index] = dead[index]
        st.values.CopyFrom(numpy_helper.from_array(codes, st.values.name))
    elif defect == "nan":
        scale = numpy_helper.to_array(st.scale).astype(np.float32).copy()
        scale.flat[rng.integers(scale.size)] = np.nan
        st.scale.CopyFrom(numpy_helper.from_array(scale, st.scale.name))
    elif defect == "uint8_zp0":  # the codes as uint8 with zero point 128, read with zero point 0
        unsigned = (codes.astype(np.int16) - _along(zero.astype(np.int16), st.axis, codes.ndim) + 128).astype(np.uint8)
        st.values.CopyFrom(numpy_helper.from_array(unsigned, st.values.name))
        st.zero.CopyFrom(numpy_helper.from_array(np.zeros(zero.shape, np.uint8), st.zero.name))
    elif defect in ZERO_POINT_SHIFTS or defect in CHANNEL_SHIFTS:
        shift = ZERO_POINT_SHIFTS.get(defect) or CHANNEL_SHIFTS[defect]
        wrong = zero.astype(np.int16).copy()
        if defect in CHANNEL_SHIFTS:
            wrong.flat[rng.integers(wrong.size)] -= shift
        else:
            wrong -= shift
        st.zero.CopyFrom(numpy_helper.from_array(np.clip(wrong, -128, 127).astype(zero.dtype), st.zero.name))
    else:
        store(st, damage(dequantized(st), defect, layout, torch_fan_in, rng))


# --- the tally -------------------------------------------------------------------------------------------------------


def audit(path: Path, fp16: bool = False) -> ModelReport:
    return initaudit.audit(str(path), jobs=1, profile="trained", fp16=fp16).models[0]


def pick_layers(report: ModelReport, proto: onnx.ModelProto, count: int, dtype: str = "float") -> list[str]:
    eligible = []
    for layer in report.layers:
        if (layer.op in OPS and layer.fans and layer.dtype == dtype and stored(proto, layer.name) is not None
                and len(layer.layout) == len(layer.shape) and "O" in layer.layout
                and layer.stats.total >= MIN_VALUES and layer.status == "ok"):
            eligible.append(layer)
    eligible.sort(key=lambda layer: (layer.stats.total, layer.name))
    if not eligible:
        return []
    picks = sorted({int(len(eligible) * (i + 1) / (count + 1)) for i in range(count)})
    return [eligible[min(i, len(eligible) - 1)].name for i in picks]


def write_copy(model_path: str, name: str, defect: str, out: str, seed: int = 0) -> int:
    path = Path(model_path)
    layer = next((x for x in audit(path).layers if x.name == name), None)
    proto = onnx.load(str(path))
    st = stored(proto, name)
    if layer is None or layer.fans is None or st is None or defect not in DEFECTS:
        print(f"{name}: no such stored weight in {path}, or unknown defect {defect!r}", file=sys.stderr)
        return 2
    plant(st, defect, layer.layout, layer.fans["pytorch"].fan_in, np.random.default_rng(seed))
    onnx.save(proto, out)
    print(f"{out}: {name} {list(layer.shape)} with {defect}")
    return 0


def statuses(report: ModelReport) -> dict[str, str]:
    return {layer.name: layer.status for layer in report.layers}


def shift(layer) -> float:
    """|mean| / σ of a reported layer (nan when undefined)."""
    return abs(layer.stats.mean) / layer.stats.std if layer.stats.count > 1 and layer.stats.var > 0 else math.nan


def largest_shifts(report: ModelReport, label: str, record: dict[str, tuple[float, str]]) -> None:
    """Keep the largest healthy |mean|/σ of layers with several output units and with one, and the largest
    share of output units shifted to one side (what IA204's trained thresholds are held against)."""
    for layer in report.layers:
        review = layer.review
        if review is None or not math.isfinite(shift(layer)):
            continue
        found = {"|mean|/σ, several units" if review.units >= 2 else "|mean|/σ, one unit": shift(layer)}
        if review.units >= 8:
            found["share of units shifted"] = review.shifted / review.units
        for key, value in found.items():
            if value > record.get(key, (-1.0, ""))[0]:
                record[key] = (value, f"{label} {layer.name} {list(layer.shape)}")


def tally_storage(storage: str, paths: list[Path], folder: Path, count: int, outcomes: list[dict[str, object]],
                  summary: dict[str, object]) -> None:
    layers = fails = warns = 0
    model_status: dict[str, int] = defaultdict(int)
    warned: list[str] = []
    skipped: list[str] = []
    shifts: dict[str, tuple[float, str]] = {}
    for source in paths:
        plain = is_plain_float(onnx.load(str(source), load_external_data=False))
        if storage != "float32" and not plain:
            continue
        path, problem = variant(source, storage, folder)
        if path is None:
            skipped.append(f"{source.name}: {problem}")
            continue
        healthy = audit(path)
        healthy16 = audit(path, fp16=True)
        layers += len(healthy.layers)
        model_status[healthy16.status] += 1
        largest_shifts(healthy16, source.name, shifts)
        for layer in healthy16.layers:
            fails += layer.status == "fail"
            warns += layer.status == "warn"
            if layer.status != "ok":
                codes = ",".join(f.code for f in layer.findings if f.severity != "info")
                warned.append(f"{source.name} {layer.name} {layer.status} {codes}")
        if storage != "float32" and not plain:  # float32: the float layers of every model, as before
            continue
        proto = onnx.load(str(path))
        for name in pick_layers(healthy, proto, count, DTYPE[storage]):
            layer = next(x for x in healthy.layers if x.name == name)
            st = stored(proto, name)
            assert st is not None and layer.fans is not None
            saved = st.snapshot()
            for d_index, defect in enumerate(DEFECTS):
                if not applies(defect, storage):
                    continue
                rng = np.random.default_rng([zlib.crc32(source.name.encode()), zlib.crc32(name.encode()), d_index])
                plant(st, defect, layer.layout, layer.fans["pytorch"].fan_in, rng)
                copy = folder / f"{source.stem}.copy.onnx"
                onnx.save(proto, str(copy))
                st.restore(saved)
                fp16 = defect == "big"
                result = audit(copy, fp16=fp16)
                before = statuses(healthy16 if fp16 else healthy)
                after = statuses(result)
                hit = next(x for x in result.layers if x.name == name)
                code, wanted = expected(defect, storage)
                named = any(f.code == code for f in hit.findings)
                others = [n for n in after if n != name and after[n] != before.get(n)]
                ok = hit.status in wanted and named and not others
                outcomes.append({"storage": storage, "model": source.name, "layer": name, "shape": list(layer.shape),
                                 "defect": defect, "status": hit.status, "codes": [f.code for f in hit.findings],
                                 "shift": shift(hit), "others_changed": others, "detected": ok})
                if not ok and DEFECTS[defect] != "IA204":
                    print(f"  missed: {storage} {source.name} {name} {list(layer.shape)} {defect}: {hit.status} "
                          f"{[f.code for f in hit.findings]} others changed {others}")
    print(f"{storage}: {sum(model_status.values())} models, {layers} layers, --profile trained --fp16: {fails} fail, "
          f"{warns} warn ({warns / max(layers, 1):.1%}); models: {dict(model_status)}")
    for key, (value, where) in sorted(shifts.items()):
        print(f"  largest healthy {key}: {value:.2f} ({where})")
    for line in warned:
        print(f"  {line}")
    for line in skipped:
        print(f"  not made: {line}")
    summary[storage] = {"models": sum(model_status.values()), "layers": layers, "fail": fails, "warn": warns,
                        "warned": warned, "not_made": skipped,
                        "largest_shift": {k: {"shift": v, "layer": w} for k, (v, w) in shifts.items()}}


def detection_table(outcomes: list[dict[str, object]], storages: list[str]) -> list[str]:
    """Markdown: per defect and storage type, copies caught of copies made (and the shift planted)."""
    lines = ["| defect | " + " | ".join(storages) + " |", "|---|" + "---|" * len(storages)]
    for defect in DEFECTS:
        cells = []
        for storage in storages:
            mine = [o for o in outcomes if o["defect"] == defect and o["storage"] == storage]
            if not mine:
                cells.append("—")
                continue
            cell = f"{sum(bool(o['detected']) for o in mine)} of {len(mine)}"
            shifts = [float(o["shift"]) for o in mine if math.isfinite(float(o["shift"]))]  # type: ignore[arg-type]
            if DEFECTS[defect] == "IA204" and shifts:
                cell += f" (shift {statistics.median(shifts):.2g} σ, {min(shifts):.2g}–{max(shifts):.2g})"
            cells.append(cell)
        lines.append(f"| {defect} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS)
    parser.add_argument("--layers", type=int, default=2, help="damaged layers per model and defect")
    parser.add_argument("--storage", nargs="+", choices=STORAGES, default=list(STORAGES))
    parser.add_argument("--json", type=Path, help="write every copy's outcome there")
    parser.add_argument("--copy", nargs=4, metavar=("MODEL", "LAYER", "DEFECT", "OUT"),
                        help="write one damaged copy instead of tallying")
    parser.add_argument("--seed", type=int, default=0, help="seed of --copy")
    args = parser.parse_args(argv)
    if args.copy:
        return write_copy(*args.copy, seed=args.seed)
    paths = sorted(args.models.rglob("*.onnx"))
    if not paths:
        print(f"no models under {args.models}; run scripts/fetch_published_models.py", file=sys.stderr)
        return 2
    outcomes: list[dict[str, object]] = []
    summary: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for storage in args.storage:
            tally_storage(storage, paths, Path(tmp), args.layers, outcomes, summary)
    print()
    print("\n".join(detection_table(outcomes, args.storage)))
    for storage in args.storage:
        big = [o for o in outcomes if o["defect"] == "big" and o["storage"] == storage]
        print(f"big, {storage}: also IA404 (int8 outlier) in {sum('IA404' in o['codes'] for o in big)} of {len(big)}")  # type: ignore[operator]
    caught = [o for o in outcomes if DEFECTS[str(o["defect"])] != "IA204"]
    print(f"\nIA401/IA402/IA201/IA206 defects detected in {sum(bool(o['detected']) for o in caught)} of {len(caught)} "
          f"copies, no other layer's status changed")
    if args.json:
        args.json.write_text(json.dumps({"models": [str(p) for p in paths], "summary": summary,
                                         "outcomes": outcomes}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
