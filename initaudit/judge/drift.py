"""Model-level signal propagation: does the activation variance explode or vanish?

Approximation (docs/conventions.md, "Signal propagation"): each checked layer multiplies the
second moment of its input by ``fan_in · Var(W) · f``, where ``f = 1/gain²`` of
the nonlinearity that follows (½ for ReLU, 1 when none follows) — the quantity
He and Glorot set to 1.  Along the chain of weight layers with the most layers,
from an input or a normalization (which resets the scale) to an output, these
factors multiply.  Residual sums, attention softmax and pooling are ignored.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from onnx import NodeProto

from initaudit.findings import Finding, finding
from initaudit.read.graph import ModelGraph, Scope
from initaudit.trace.follow import WeightUse

NORMALIZATIONS = {
    "BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
    "RMSNormalization", "LpNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
    "SkipSimplifiedLayerNormalization", "Softmax",
}
MAX_VISITS = 200_000


def signal_drift(graph: ModelGraph, grouped: dict[tuple[str, str], list[WeightUse]],
                 gains_by_weight: Sequence[tuple[str, float | None]], limit: float) -> tuple[float | None, list[Finding]]:
    gains: dict[int, tuple[Scope, NodeProto, float, str]] = {}
    for (name, forward_gain), uses in zip(gains_by_weight, grouped.values()):
        if forward_gain and forward_gain > 0:
            for use in uses:
                gains.setdefault(id(use.consumer), (use.scope, use.consumer, forward_gain, name))
    if not gains:
        return None, []
    predecessors_of: dict[int, list[int]] = {}
    chains: dict[int, tuple[int, float, str]] = {}
    visits = [0]

    def predecessors(scope: Scope, node: NodeProto) -> list[NodeProto]:
        found, seen, stack = [], set(), list(node.input)
        while stack and visits[0] < MAX_VISITS:
            name = stack.pop()
            if name in seen or name not in scope.producers:
                continue
            seen.add(name)
            visits[0] += 1
            producer = scope.producers[name][0]
            if id(producer) in gains:
                found.append(producer)
            elif producer.op_type not in NORMALIZATIONS:
                stack.extend(producer.input)
        return found

    def chain(start: int) -> tuple[int, float, str]:
        """(layers, log of the product, first layer's name) of the longest chain ending at ``start``."""
        stack, on_stack = [start], {start}
        while stack:  # iterative depth-first: a deep model must not hit the recursion limit
            node_id = stack[-1]
            if node_id in chains:
                on_stack.discard(stack.pop())
                continue
            scope, node, gain, name = gains[node_id]
            if node_id not in predecessors_of:
                predecessors_of[node_id] = [id(p) for p in predecessors(scope, node)]
            before = predecessors_of[node_id]
            pending = [p for p in before if p not in chains and p not in on_stack]
            if pending:
                stack.extend(pending)
                on_stack.update(pending)
                continue
            best = max((chains[p] for p in before if p in chains), key=lambda c: (c[0], abs(c[1])),
                       default=(0, 0.0, name))
            chains[node_id] = (best[0] + 1, best[1] + math.log(gain), best[2])
            on_stack.discard(stack.pop())
        return chains[start]

    length, log_gain, first = max((chain(k) for k in gains), key=lambda c: (c[0], abs(c[1])))
    drift = math.exp(max(min(log_gain, 700.0), -700.0))
    findings = []
    if abs(log_gain) > math.log(limit):
        direction = "grow" if log_gain > 0 else "shrink"
        findings.append(finding(
            "IA104",
            f"along a chain of {length} layers from {first!r}, the activation variance is estimated to {direction} "
            f"by {_times(abs(log_gain))} (limit {limit:g}×)"))
    return drift, findings


def _times(log_factor: float) -> str:
    """``3.79e+03×`` — or ``10^2171×`` where a float would overflow."""
    exponent = log_factor / math.log(10)
    return f"{10 ** exponent:.3g}×" if exponent < 300 else f"10^{exponent:.0f}×"
