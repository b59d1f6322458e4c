"""``initaudit diff A B``: read both models, match their weights, compare each pair in one streaming pass,
judge what changed (``DiffReport``)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from initaudit.findings import Finding, finding
from initaudit.judge.change import Compared, judge_pairs
from initaudit.measure.compare import (
    TRANSPOSE_MAX_ELEMS,
    Pair,
    Side,
    change_of,
    comparable,
    compare_all,
    sample_correlation,
)
from initaudit.measure.streaming import default_jobs, single_blas_thread
from initaudit.measure.units import UnitAxes, unit_axes
from initaudit.pipeline.options import AuditOptions
from initaudit.read.dtypes import PRECISION_BITS
from initaudit.read.graph import ModelGraph
from initaudit.read.loader import LoadedModel, load_model
from initaudit.read.nbits import NBitsDecoder
from initaudit.report.comparison import DiffReport, DiffSide, LayerPair, Unmatched
from initaudit.trace.downstream import batchnorm_scale, integer_weight_scale
from initaudit.trace.follow import uses_by_weight
from initaudit.trace.match import LayerKey, match_layers
from initaudit.trace.plan import Planned, plan, plan_absent

__all__ = ["diff"]

#: Axis letters in the order both sides of a pair are put in when they store different layouts.
CANONICAL = "BGOI"


@dataclass
class Weight:
    """One weight of one model, as the diff needs it."""

    planned: Planned
    shape: tuple[int, ...]       # of the values its task yields
    layout: str                  # one letter per axis of ``shape`` ("" when unknown)
    count: int                   # values its task yields
    stored: bool                 # the file holds its values
    bits: int | None             # significant bits of its storage (None: float32 or wider)
    batchnorm: np.ndarray | None = None   # γ/√(var + ε) of a BatchNorm its output meets next
    scale: np.ndarray | None = None       # the weight scale an integer op applies after the product
    integer: bool = False                 # its values are integer codes (times ``scale`` if found)

    @property
    def name(self) -> str:
        return self.planned.ref.name

    @property
    def op(self) -> str:
        return self.planned.primary.use.consumer.op_type if self.planned.primary else ""

    @property
    def node(self) -> str:
        return self.planned.primary.node_name if self.planned.primary else ""

    @property
    def order(self) -> tuple[int, ...] | None:
        """The axes in canonical order (None: no layout known, or a letter repeats)."""
        if not self.layout or len(set(self.layout)) != len(self.layout):
            return None
        rank = {letter: i for i, letter in enumerate(CANONICAL)}
        return tuple(sorted(range(len(self.layout)), key=lambda i: (rank.get(self.layout[i], len(CANONICAL)), i)))

    def key(self, position: int) -> LayerKey:
        order = self.order
        role = self.planned.primary.role if self.planned.primary else None
        shape = tuple(self.shape[i] for i in order) if order is not None else self.shape
        return LayerKey(self.name, role.kind if role else "", shape, position)


def _weights(model: LoadedModel) -> list[Weight]:
    graph = ModelGraph(model.proto)
    grouped, absent = uses_by_weight(graph, model.load_array)
    found = []
    for uses in grouped.values():
        found.append(_weight(model, graph, plan(model, graph, uses)))
    for uses in absent.values():
        p = plan_absent(model, graph, uses)
        found.append(Weight(p, p.source.shape, _layout(p, p.source.shape), p.source.count, False, None))
    return found


def _layout(p: Planned, shape: tuple[int, ...]) -> str:
    layout = p.primary.layout if p.primary is not None and p.primary.role is not None else ""
    return layout if len(layout) == len(shape) else ""


def _weight(model: LoadedModel, graph: ModelGraph, p: Planned) -> Weight:
    decoder = p.task.decoder
    if isinstance(decoder, NBitsDecoder):  # the logical [N, K] of the stored blocks
        lay = decoder.layout
        w = Weight(p, (lay.n, lay.k), "OI", lay.n * lay.k, True, lay.bits)
    else:
        w = Weight(p, p.source.shape, _layout(p, p.source.shape), p.source.count, True,
                   PRECISION_BITS.get(p.source.data_type))
    if p.primary is not None and p.primary.role is not None:
        use = p.primary.use
        load = model.load_array
        w.batchnorm = batchnorm_scale(graph, use.scope, use.consumer, load)
        if p.integer_units:
            w.integer = True
            w.scale = integer_weight_scale(graph, use.scope, use.consumer, load)
    return w


def _units(w: Weight, shape: tuple[int, ...], layout: str) -> UnitAxes | None:
    role = w.planned.primary.role if w.planned.primary else None
    if role is None or role.kind != "layer" or not layout:
        return None
    return unit_axes(shape, layout, role.groups, per_group=role.per_group)


def _multiplier(w: Weight, other: Weight, units: UnitAxes | None) -> tuple[np.ndarray | None, str | None]:
    """What ``w``'s values are multiplied by to be comparable with ``other``'s, or why they cannot be."""
    factor = np.ones(1)
    if w.integer:
        if w.scale is None:
            return None, f"{w.name!r} holds integer codes read by {w.op} and the weight scale it is multiplied by " \
                         f"after the product was not found"
        factor = factor * w.scale
    if w.batchnorm is not None and other.batchnorm is None:
        if not np.isfinite(w.batchnorm).all():
            return None, f"a BatchNorm follows {w.name!r} on one side only, and its scale is not stored"
        factor = factor * w.batchnorm
    if factor.size > 1 and (units is None or units.units != factor.size):
        return None, f"a per-channel factor of {factor.size} values does not fit the output units of {w.name!r}"
    return (None if factor.size == 1 and factor[0] == 1.0 else factor), None


def _pair(wa: Weight, wb: Weight) -> tuple[Pair | None, str | None]:
    """The comparison of two matched weights, or why there is none (IA606)."""
    if not wa.stored or not wb.stored:
        missing = wa.name if not wa.stored else wb.name
        return None, f"the weights of {missing!r} are not stored in its file"
    orders: tuple[tuple[int, ...] | None, tuple[int, ...] | None] = (None, None)
    if wa.shape == wb.shape and wa.layout == wb.layout:
        shape, layout = wa.shape, wa.layout
    elif wa.order is not None and wb.order is not None and wa.count == wb.count \
            and [(wa.layout[i], wa.shape[i]) for i in wa.order] == [(wb.layout[i], wb.shape[i]) for i in wb.order]:
        orders = (wa.order, wb.order)
        shape = tuple(wa.shape[i] for i in wa.order)
        layout = "".join(wa.layout[i] for i in wa.order)
    elif wa.count != wb.count or not wa.layout or not wb.layout:
        return None, f"shape changed: {list(wa.shape)} → {list(wb.shape)}"
    else:
        return None, f"layouts {wa.layout} {list(wa.shape)} and {wb.layout} {list(wb.shape)} have no common axis order"
    units = _units(wa, shape, layout)
    mult_a, why_a = _multiplier(wa, wb, units)
    mult_b, why_b = _multiplier(wb, wa, units)
    if why_a or why_b:
        return None, why_a or why_b
    pair = Pair(Side(wa.planned.task, wa.shape, orders[0], mult_a, wa.count),
                Side(wb.planned.task, wb.shape, orders[1], mult_b, wb.count), units)
    if not comparable(pair):
        return None, (f"stored in another axis order on each side ({wa.layout} {list(wa.shape)}, {wb.layout} "
                      f"{list(wb.shape)}), larger than {TRANSPOSE_MAX_ELEMS:,} values and not a 2-D transpose")
    return pair, None


def diff(a: str | os.PathLike[str], b: str | os.PathLike[str], jobs: int | None = None, fail_on: str = "fail",
         select: tuple[str, ...] = (), ignore: tuple[str, ...] = ()) -> DiffReport:
    """What changed from model ``a`` to model ``b``, layer by layer.

    Raises:
        InitauditError: a bad option, or a model that cannot be read.
    """
    opts = AuditOptions(fail_on=fail_on, select=tuple(select), ignore=tuple(ignore))
    jobs = default_jobs() if jobs is None else max(1, jobs)
    with single_blas_thread(), load_model(a) as model_a, load_model(b) as model_b:
        side_a, side_b = _weights(model_a), _weights(model_b)

        def correlate(i: int, j: int) -> float | None:
            wa, wb = side_a[i], side_b[j]
            if not (wa.stored and wb.stored and wa.shape == wb.shape):
                return None
            return sample_correlation(wa.planned.task, wb.planned.task)

        matching = match_layers([w.key(i) for i, w in enumerate(side_a)],
                                [w.key(j) for j, w in enumerate(side_b)], correlate)
        built = [_pair(side_a[i], side_b[j]) for i, j, _ in matching.pairs]
        comparable = [pair for pair, _ in built if pair is not None]
        sums = iter(compare_all(comparable, jobs))
        changes = [change_of(next(sums)) if pair is not None else None for pair, _ in built]
        compared = [Compared(_label(side_a[i], side_b[j]), change, side_a[i].bits, side_b[j].bits)
                    for (i, j, _), change in zip(matching.pairs, changes)]
        judged = judge_pairs(compared)
        layers = []
        for (i, j, how), (pair, why), change, found in zip(matching.pairs, built, changes, judged):
            wa, wb = side_a[i], side_b[j]
            extra: list[Finding] = []
            if why is not None:
                extra.append(finding("IA606", f"{_label(wa, wb)}: {why}"))
            folded = _folded(wa, wb) if pair is not None else ""
            if folded:
                extra.append(finding("IA607", f"{_label(wa, wb)}: {_side_name(folded)}'s BatchNorm after "
                                              f"{(wa if folded == 'a' else wb).node!r} is folded into the other's "
                                              f"weight; compared with it applied"))
            layers.append(LayerPair(wa.name, wb.name, wa.op, wb.op, wa.node, wb.node, wa.planned.source.shape,
                                    wb.planned.source.shape, wa.planned.source.dtype, wb.planned.source.dtype, how,
                                    change, opts.selected([*found, *extra]), wa.bits, wb.bits, folded))
        unmatched = [_unmatched("a", side_a[i], opts) for i in matching.only_a]
        unmatched += [_unmatched("b", side_b[j], opts) for j in matching.only_b]
        return DiffReport(_side(a, model_a, side_a), _side(b, model_b, side_b), tuple(layers), tuple(unmatched),
                          opts.fail_on)


def _label(wa: Weight, wb: Weight) -> str:
    return wa.name if wa.name == wb.name else f"{wa.name} → {wb.name}"


def _side_name(side: str) -> str:
    return "A" if side == "a" else "B"


def _folded(wa: Weight, wb: Weight) -> str:
    if (wa.batchnorm is None) == (wb.batchnorm is None):
        return ""
    return "a" if wa.batchnorm is not None else "b"


def _unmatched(side: str, w: Weight, opts: AuditOptions) -> Unmatched:
    code, other = ("IA604", "B") if side == "a" else ("IA605", "A")
    message = f"{w.name} {list(w.planned.source.shape)} read by {w.op or 'an unknown op'}: not found in {other}"
    return Unmatched(side, w.name, w.op, w.node, w.planned.source.shape, w.planned.source.dtype,
                     opts.selected([finding(code, message)]))


def _side(path: str | os.PathLike[str], model: LoadedModel, weights: list[Weight]) -> DiffSide:
    proto = model.proto
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    producer = " ".join(p for p in (proto.producer_name, proto.producer_version) if p)
    return DiffSide(str(path), producer, opset, len(weights))

