"""Plant one defect per copy of published trained models and tally what the trained review finds.

    python scripts/fetch_published_models.py            # once: models into ~/.cache/initaudit-published
    python scripts/plant_defects.py [--models DIR] [--layers N] [--json OUT]

1. Healthy models, ``--profile trained`` (and ``--fp16``): fail count and warn share over all layers,
   and every warn listed with its codes.
2. For N mid-sized float32 layers per model (the layers at the quantiles 1/(N+1) … N/(N+1) of size among
   Conv / ConvTranspose / Gemm / MatMul / LSTM / GRU weights), one copy of the model per defect:

   torch_default  values re-drawn from U(±1/√fan_in), fan_in as PyTorch counts it    → IA401
   normal_0.02    values re-drawn from N(0, 0.02)  (Hugging Face's _init_weights)       → IA401
   dead_quarter   a quarter of the output units set to zero (the tracer's 'O' axis)    → IA402
   nan            one value set to NaN                                                  → IA201, fail
   big            one value set to 1e5, audited with --fp16                             → IA206

   One damaged copy for a look of one's own (the worked example in docs/trained-review.md):
   python scripts/plant_defects.py --copy MODEL LAYER DEFECT OUT.onnx [--seed 0]

   A copy counts as detected when the damaged layer is warn or fail (fail for nan) with that code, and
   no other layer's status differs from the healthy model's.  The copies are written to a temporary
   folder and deleted.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

import initaudit
from initaudit.report.model import ModelReport

DEFAULT_MODELS = Path.home() / ".cache" / "initaudit-published" / "models"
OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU"}
DEFECTS = {"torch_default": "IA401", "normal_0.02": "IA401", "dead_quarter": "IA402", "nan": "IA201", "big": "IA206"}
MIN_VALUES = 4096


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


def audit(path: Path, fp16: bool = False) -> ModelReport:
    return initaudit.audit(str(path), jobs=1, profile="trained", fp16=fp16).models[0]


def pick_layers(report: ModelReport, proto: onnx.ModelProto, count: int) -> list[str]:
    eligible = []
    for layer in report.layers:
        tensor = initializer(proto, layer.name)
        if (layer.op in OPS and layer.fans and layer.dtype == "float" and tensor is not None
                and len(layer.layout) == len(layer.shape) and "O" in layer.layout
                and layer.stats.total >= MIN_VALUES and layer.status == "ok"):
            eligible.append(layer)
    eligible.sort(key=lambda layer: (layer.stats.total, layer.name))
    if not eligible:
        return []
    picks = sorted({int(len(eligible) * (i + 1) / (count + 1)) for i in range(count)})
    return [eligible[min(i, len(eligible) - 1)].name for i in picks]


def damage(values: np.ndarray, defect: str, layout: str, torch_fan_in: int, rng: np.random.Generator) -> np.ndarray:
    out = values.astype(np.float32).copy()
    if defect == "torch_default":
        bound = 1.0 / np.sqrt(torch_fan_in)
        out = rng.uniform(-bound, bound, size=out.shape).astype(np.float32)
    elif defect == "normal_0.02":
        out = rng.normal(0.0, 0.02, size=out.shape).astype(np.float32)
    elif defect == "dead_quarter":
        axis = layout.index("O")
        units = out.shape[axis]
        chosen = rng.choice(units, size=max(1, units // 4), replace=False)
        index = [slice(None)] * out.ndim
        index[axis] = chosen
        out[tuple(index)] = 0.0
    elif defect == "nan":
        out.flat[rng.integers(out.size)] = np.nan
    elif defect == "big":
        out.flat[rng.integers(out.size)] = 1e5
    return out


def write_copy(model_path: str, name: str, defect: str, out: str, seed: int = 0) -> int:
    path = Path(model_path)
    layer = next((x for x in audit(path).layers if x.name == name), None)
    proto = onnx.load(str(path))
    tensor = initializer(proto, name)
    if layer is None or layer.fans is None or tensor is None or defect not in DEFECTS:
        print(f"{name}: no such float weight in {path}, or unknown defect {defect!r}", file=sys.stderr)
        return 2
    damaged = damage(numpy_helper.to_array(tensor), defect, layer.layout, layer.fans["pytorch"].fan_in,
                     np.random.default_rng(seed))
    tensor.CopyFrom(numpy_helper.from_array(damaged, tensor.name))
    onnx.save(proto, out)
    print(f"{out}: {name} {list(layer.shape)} with {defect}")
    return 0


def statuses(report: ModelReport) -> dict[str, str]:
    return {layer.name: layer.status for layer in report.layers}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS)
    parser.add_argument("--layers", type=int, default=2, help="damaged layers per model and defect")
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
    layers = fails = warns = 0
    model_status: dict[str, int] = defaultdict(int)
    warned: list[str] = []
    outcomes: list[dict[str, object]] = []
    tally: dict[str, list[bool]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            healthy = audit(path)
            healthy16 = audit(path, fp16=True)
            layers += len(healthy.layers)
            model_status[healthy16.status] += 1
            for layer in healthy16.layers:
                fails += layer.status == "fail"
                warns += layer.status == "warn"
                if layer.status != "ok":
                    codes = ",".join(f.code for f in layer.findings if f.severity != "info")
                    warned.append(f"{path.name} {layer.name} {layer.status} {codes}")
            proto = onnx.load(str(path))
            for name in pick_layers(healthy, proto, args.layers):
                layer = next(x for x in healthy.layers if x.name == name)
                tensor = initializer(proto, name)
                assert tensor is not None and layer.fans is not None
                original = numpy_helper.to_array(tensor)
                stored_name = tensor.name
                for d_index, defect in enumerate(DEFECTS):
                    rng = np.random.default_rng([zlib.crc32(path.name.encode()), zlib.crc32(name.encode()), d_index])
                    damaged = damage(original, defect, layer.layout, layer.fans["pytorch"].fan_in, rng)
                    tensor.CopyFrom(numpy_helper.from_array(damaged, stored_name))
                    copy = Path(tmp) / f"{path.stem}.onnx"
                    onnx.save(proto, str(copy))
                    fp16 = defect == "big"
                    result = audit(copy, fp16=fp16)
                    before = statuses(healthy16 if fp16 else healthy)
                    after = statuses(result)
                    hit = next(x for x in result.layers if x.name == name)
                    code = DEFECTS[defect]
                    named = any(f.code == code for f in hit.findings)
                    wanted = ("fail",) if defect == "nan" else ("warn", "fail")
                    others = [n for n in after if n != name and after[n] != before.get(n)]
                    ok = hit.status in wanted and named and not others
                    tally[defect].append(ok)
                    outcomes.append({"model": path.name, "layer": name, "shape": list(layer.shape), "defect": defect,
                                     "status": hit.status, "codes": [f.code for f in hit.findings],
                                     "others_changed": others, "detected": ok})
                    if not ok:
                        print(f"  missed: {path.name} {name} {list(layer.shape)} {defect}: {hit.status} "
                              f"{[f.code for f in hit.findings]} others changed {others}")
                tensor.CopyFrom(numpy_helper.from_array(original, stored_name))
    print(f"healthy: {len(paths)} models, {layers} layers, --profile trained --fp16: {fails} fail, "
          f"{warns} warn ({warns / max(layers, 1):.1%}); models: {dict(model_status)}")
    for line in warned:
        print(f"  {line}")
    total = [x for v in tally.values() for x in v]
    for defect, hits in tally.items():
        print(f"{defect:14s} detected in {sum(hits)} of {len(hits)} copies ({sum(hits) / len(hits):.0%})")
    big = [o for o in outcomes if o["defect"] == "big"]
    print(f"big            also IA404 (int8 outlier) in {sum('IA404' in o['codes'] for o in big)} of {len(big)}")
    print(f"all defects    detected in {sum(total)} of {len(total)} copies ({sum(total) / max(len(total), 1):.1%})")
    if args.json:
        args.json.write_text(json.dumps({"outcomes": outcomes, "healthy_layers": layers, "healthy_fail": fails,
                                         "healthy_warn": warns, "warned": warned}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
