"""How each weight-carrying operator reads its weight: layout, groups, fans, parts.

Everything here is a pure function of the op type, its attributes and the shape
of the weight *as the operator receives it* (after any Transpose/Reshape the
tracer looked through).  Layout letters: ``O`` output units, ``I`` input units,
``B`` independent slices (batch, direction), other letters receptive field.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from initaudit.trace.fans import Fans, conv_fans, conv_transpose_fans, same_fans, spatial_letters

#: ONNX gate order of the recurrent ops (Operators.md): LSTM i,o,f,c; GRU z,r,h.
GATES = {"LSTM": "iofc", "GRU": "zrh", "RNN": "h"}
DIRECTIONS = {"forward": ("forward",), "reverse": ("reverse",), "bidirectional": ("forward", "reverse")}

MS = "com.microsoft"


class UnsupportedUse(Exception):
    """The weight reaches a known op in a way whose fans cannot be stated."""


@dataclass(frozen=True)
class Part:
    """An independent matrix inside the tensor.

    Viewing the flat tensor as rows of ``block`` elements, the part is columns
    ``[start, stop)`` of every row: a slice along one axis, or one block of a
    stacked tensor, in a form the streaming pass can cut chunks by.
    """

    name: str
    block: int
    start: int
    stop: int


def axis_part(name: str, shape: Sequence[int], axis: int, start: int, stop: int) -> Part:
    """The part ``[start, stop)`` along ``axis`` (all other axes whole)."""
    inner = math.prod(shape[axis + 1:])
    return Part(name, math.prod(shape[axis:]), start * inner, stop * inner)


@dataclass(frozen=True)
class Role:
    layout: str                                   # one letter per axis of the consumed shape
    fans: dict[str, Fans] | None           # None: not a fan-based weight (embedding)
    groups: int = 1
    parts: tuple[Part, ...] = ()
    kind: Literal["layer", "embedding"] = "layer"
    scale: float = 1.0                            # the op multiplies the weight by this (Gemm alpha)
    #: with groups > 1, the layout letter whose axis counts the units of one group (Conv
    #: W[M, C/g, k…]: I; ConvTranspose W[C, M/g, k…]: O): the other side's axis tells the group
    per_group: Literal["I", "O"] = "I"


@dataclass(frozen=True)
class OpUse:
    """A weight as one node consumes it."""

    op: str
    domain: str
    slot: int
    shape: tuple[int, ...]
    attrs: dict[str, Any]


def _groups(use: OpUse, layout: str) -> int:
    """The ``group`` of a (transposed) convolution whose weight is ``layout`` = [full, per-group, k...]."""
    shape, groups = use.shape, int(use.attrs.get("group", 1))
    if len(shape) < 3:
        raise UnsupportedUse(f"{use.op} weight of rank {len(shape)}; expected {layout}")
    if groups < 1 or shape[0] % groups:
        raise UnsupportedUse(f"{use.op} weight axis 0 of {shape[0]} not divisible by group={groups}")
    return groups


def _conv(use: OpUse) -> Role:
    groups = _groups(use, "[M, C/group, k...]")
    return Role("OI" + spatial_letters(len(use.shape) - 2), conv_fans(use.shape, groups), groups)


def _nhwc_conv(use: OpUse) -> Role:
    """com.microsoft NhwcConv: channels-last, weight ``[M, k..., C/group]`` (onnxruntime's
    FusionNhwcConv stores ``W.transpose(0, 2, 3, 1)`` of the Conv it replaces)."""
    shape = use.shape
    if len(shape) < 3:
        raise UnsupportedUse(f"NhwcConv weight of rank {len(shape)}; expected [M, k..., C/group]")
    as_conv = OpUse(use.op, use.domain, use.slot, (shape[0], shape[-1], *shape[1:-1]), use.attrs)
    groups = _groups(as_conv, "[M, k..., C/group]")
    return Role("O" + spatial_letters(len(shape) - 2) + "I", conv_fans(as_conv.shape, groups), groups)


def _conv_transpose(use: OpUse) -> Role:
    groups = _groups(use, "[C, M/group, k...]")
    return Role("IO" + spatial_letters(len(use.shape) - 2), conv_transpose_fans(use.shape, groups), groups,
                per_group="O")


def _matrix(shape: Sequence[int], right_operand: bool, scale: float = 1.0) -> Role:
    """A matrix (or a stack of them) multiplied as ``x @ W`` (W is [in, out]) or ``W @ x`` ([out, in])."""
    if not math.isfinite(scale):
        raise UnsupportedUse(f"alpha = {scale} is not a finite number")
    if len(shape) == 0:
        raise UnsupportedUse("a scalar operand, not a weight matrix")
    if len(shape) == 1:
        return Role("I", same_fans(Fans(shape[0], 1)), scale=scale)
    rows, cols = shape[-2], shape[-1]
    letters = "IO" if right_operand else "OI"
    fans = Fans(rows, cols) if right_operand else Fans(cols, rows)
    return Role("B" * (len(shape) - 2) + letters, same_fans(fans), scale=scale)


def _gemm(use: OpUse) -> Role:
    """``Y = alpha·A'·B'``: B (QGemm: input 3) stored [K, N], or [N, K] with transB; A as the
    weight is [M, K], or [K, M] with transA."""
    if len(use.shape) != 2:
        raise UnsupportedUse(f"Gemm operand of rank {len(use.shape)}")
    if use.slot in (1, 3):
        right = not int(use.attrs.get("transB", 0))
    else:
        right = bool(int(use.attrs.get("transA", 0)))
    return _matrix(use.shape, right, float(use.attrs.get("alpha", 1.0)))


def _matmul(use: OpUse) -> Role:
    right = use.slot in (1, 3) if use.op == "QLinearMatMul" else use.slot == 1
    if use.op == "FusedMatMul":  # alpha · transA(A) @ transB(B)
        if int(use.attrs.get("transB" if use.slot == 1 else "transA", 0)):
            right = not right
        return _matrix(use.shape, right, float(use.attrs.get("alpha", 1.0)))
    return _matrix(use.shape, right)


def _recurrent(use: OpUse) -> Role:
    """LSTM/GRU/RNN ``W[D, G·H, I]`` and ``R[D, G·H, H]``: fans per gate, parts per gate."""
    shape = use.shape
    gates = GATES[use.op]
    if len(shape) != 3 or shape[1] % len(gates):
        raise UnsupportedUse(f"{use.op} weight of shape {list(shape)}; expected [D, {len(gates)}·H, I]")
    hidden = int(use.attrs.get("hidden_size", shape[1] // len(gates)))
    if hidden * len(gates) != shape[1]:
        raise UnsupportedUse(f"{use.op} hidden_size={hidden} does not match weight shape {list(shape)}")
    directions = DIRECTIONS.get(use.attrs.get("direction", "forward"), ("forward",))
    if len(directions) != shape[0]:
        directions = tuple(f"dir{d}" for d in range(shape[0]))
    n_in = shape[2]
    gate_packed = Fans(n_in, len(gates) * hidden)  # torch weight_ih [G·H, I]; Keras kernel (I, G·H)
    fans: dict[str, Fans] = {
        "connectivity": Fans(n_in, hidden), "pytorch": gate_packed, "keras": gate_packed,
    }
    block = hidden * n_in  # one gate of one direction, contiguous in [D, G·H, I]
    parts = tuple(
        Part(f"{direction}.{gate}", math.prod(shape), (d * len(gates) + g) * block,
             (d * len(gates) + g + 1) * block)
        for d, direction in enumerate(directions)
        for g, gate in enumerate(gates)
    )
    return Role("BOI", fans, parts=parts)


def _dynamic_quantize_lstm(use: OpUse) -> Role:
    """com.microsoft DynamicQuantizeLSTM: W ``[D, I, 4H]`` and R ``[D, H, 4H]`` (inputs × gates, i,o,f,c)."""
    shape = use.shape
    if len(shape) != 3 or shape[2] % 4:
        raise UnsupportedUse(f"DynamicQuantizeLSTM weight of shape {list(shape)}; expected [D, I, 4·H]")
    hidden = int(use.attrs.get("hidden_size", shape[2] // 4))
    if 4 * hidden != shape[2]:
        raise UnsupportedUse(f"DynamicQuantizeLSTM hidden_size={hidden} does not match {list(shape)}")
    packed = Fans(shape[1], 4 * hidden)
    fans: dict[str, Fans] = {"connectivity": Fans(shape[1], hidden), "pytorch": packed, "keras": packed}
    parts = tuple(axis_part(gate, shape, 2, g * hidden, (g + 1) * hidden)
                  for g, gate in enumerate(GATES["LSTM"])) if shape[0] == 1 else ()
    return Role("BIO", fans, parts=parts)


def _einsum(use: OpUse) -> Role:
    equation = str(use.attrs.get("equation", "")).replace(" ", "")
    inputs, arrow, output = equation.partition("->")
    terms = inputs.split(",")
    if use.slot >= len(terms):
        raise UnsupportedUse(f"Einsum equation {equation!r} has no operand {use.slot}")
    if not arrow:  # implicit output: the letters used once, in alphabetical order
        letters = "".join(terms)
        output = "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c != "."))
    weight = _expand_ellipsis(terms[use.slot], len(use.shape))
    if weight is None or len(weight) != len(use.shape):
        raise UnsupportedUse(f"Einsum operand {terms[use.slot]!r} does not match weight rank {len(use.shape)}")
    if len(set(c for c in weight if c != ".")) != len([c for c in weight if c != "."]):
        raise UnsupportedUse(f"Einsum operand {terms[use.slot]!r} repeats an index (a diagonal)")
    others = "".join(t for i, t in enumerate(terms) if i != use.slot)
    layout = ""
    for letter in weight:
        if letter == "." or (letter in output and letter in others):
            layout += "B"
        elif letter in output:
            layout += "O"
        else:
            layout += "I"
    fan_in = math.prod(d for d, a in zip(use.shape, layout) if a == "I")
    fan_out = math.prod(d for d, a in zip(use.shape, layout) if a == "O")
    return Role(layout, same_fans(Fans(fan_in, fan_out)))


def _expand_ellipsis(term: str, rank: int) -> str | None:
    if "..." not in term:
        return term
    head, _, tail = term.partition("...")
    fill = rank - len(head) - len(tail)
    return None if fill < 0 else head + "." * fill + tail


def _packed_attention(use: OpUse) -> Role:
    """com.microsoft Attention: weights ``[in, q + k + v]``, Q/K/V stacked on axis 1."""
    if len(use.shape) != 2:
        raise UnsupportedUse(f"Attention weights of rank {len(use.shape)}; expected [in, 3·hidden]")
    sizes = [int(s) for s in use.attrs.get("qkv_hidden_sizes", [])] or [use.shape[1] // 3] * 3
    if len(sizes) != 3:
        raise UnsupportedUse(f"Attention qkv_hidden_sizes {sizes} does not have three entries (q, k, v)")
    if sum(sizes) != use.shape[1]:
        raise UnsupportedUse(f"Attention qkv sizes {sizes} do not add up to {use.shape[1]}")
    bounds = [0, *itertools.accumulate(sizes)]
    parts = tuple(axis_part(n, use.shape, 1, bounds[i], bounds[i + 1]) for i, n in enumerate("qkv"))
    fans: dict[str, Fans] = {"connectivity": Fans(use.shape[0], sizes[0]),
                                    "pytorch": Fans(use.shape[0], use.shape[1]),
                                    "keras": Fans(use.shape[0], use.shape[1])}
    return Role("IO", fans, parts=parts)


def _matmul_nbits(use: OpUse) -> Role:
    """com.microsoft MatMulNBits: logical weight [N, K] (Y = A·Wᵀ), stored block-quantized."""
    from initaudit.read.nbits import NBitsLayout
    try:
        layout = NBitsLayout(int(use.attrs["N"]), int(use.attrs["K"]), int(use.attrs.get("bits", 4)),
                             int(use.attrs["block_size"]))
    except KeyError as missing:
        raise UnsupportedUse(f"MatMulNBits without attribute {missing}") from None
    if int(use.attrs.get("weight_prepacked", 0)):
        raise UnsupportedUse("MatMulNBits with a prepacked (execution-provider specific) weight")
    if layout.bits not in (2, 4, 8) or layout.block_size < 1 or tuple(use.shape) != layout.stored_shape:
        raise UnsupportedUse(f"MatMulNBits weight of shape {list(use.shape)}, expected {list(layout.stored_shape)}")
    return Role("OII", same_fans(Fans(layout.k, layout.n)))  # logical [N, K] stored as blocks of K


def _embedding(use: OpUse) -> Role:
    if int(use.attrs.get("axis", 0)) != 0 or len(use.shape) != 2:
        raise UnsupportedUse("Gather on a constant that is not an embedding table")
    return Role("VD", None, kind="embedding")


@dataclass(frozen=True)
class OpSpec:
    """Everything initaudit knows about one weight-carrying op, beyond what its ``role`` function
    derives from the attributes and the weight's shape (layout, fans, groups, parts)."""

    domain: str
    op: str
    weight_slots: tuple[int, ...]          # inputs that are weights (the others: biases, scales, activations)
    role: Callable[[OpUse], Role]
    inputs: int                            # inputs of a node that uses every weight and quantization slot
    #: quantization parameters the op itself carries for a weight slot:
    #: slot → (scale slot, zero-point slot, axis of a per-channel scale)
    dequant: dict[int, tuple[int | None, int | None, int | str]] = field(default_factory=dict)
    integer_units: bool = False            # no weight scale anywhere (ConvInteger): statistics in integer units
    packable: bool = False                 # may hold packed projections (q/k/v) that a later Split cuts
    blocks: bool = False                   # stored as packed quantized blocks (MatMulNBits): measured whole
    pooled: bool = False                   # a receptive field whose fan_out a following pool divides (--pool-aware)


OP_TABLE: tuple[OpSpec, ...] = (
    OpSpec("", "Conv", (1,), _conv, 2, pooled=True),
    OpSpec("", "ConvInteger", (1,), _conv, 4, {1: (None, 3, 0)}, integer_units=True),
    OpSpec("", "QLinearConv", (3,), _conv, 8, {3: (4, 5, 0)}, pooled=True),
    OpSpec("", "DeformConv", (1,), _conv, 3, pooled=True),
    OpSpec(MS, "FusedConv", (1,), _conv, 2, pooled=True),
    OpSpec(MS, "NhwcConv", (1,), _nhwc_conv, 2, pooled=True),
    OpSpec(MS, "QLinearConv", (3,), _conv, 8, {3: (4, 5, 0)}, pooled=True),
    OpSpec("", "ConvTranspose", (1,), _conv_transpose, 2),
    OpSpec("", "Gemm", (0, 1), _gemm, 2, packable=True),
    OpSpec(MS, "FusedGemm", (0, 1), _gemm, 2),
    OpSpec(MS, "QGemm", (3,), _gemm, 6, {3: (4, 5, "N")}),
    OpSpec("", "MatMul", (0, 1), _matmul, 2, packable=True),
    OpSpec("", "MatMulInteger", (0, 1), _matmul, 4, {0: (None, 2, -2), 1: (None, 3, -1)}, integer_units=True),
    OpSpec("", "QLinearMatMul", (0, 3), _matmul, 8, {0: (1, 2, -2), 3: (4, 5, -1)}),
    OpSpec(MS, "FusedMatMul", (0, 1), _matmul, 2),
    OpSpec(MS, "MatMulIntegerToFloat", (0, 1), _matmul, 6, {0: (2, 4, -2), 1: (3, 5, -1)}),
    OpSpec("", "LSTM", (1, 2), _recurrent, 3),
    OpSpec("", "GRU", (1, 2), _recurrent, 3),
    OpSpec("", "RNN", (1, 2), _recurrent, 3),
    OpSpec("", "Einsum", tuple(range(8)), _einsum, 2),
    OpSpec(MS, "Attention", (1,), _packed_attention, 3),
    OpSpec(MS, "MatMulNBits", (1,), _matmul_nbits, 4, packable=True, blocks=True),
    OpSpec(MS, "DynamicQuantizeLSTM", (1, 2), _dynamic_quantize_lstm, 12, {1: (8, 9, 0), 2: (10, 11, 0)}),
    OpSpec("", "Gather", (0,), _embedding, 2),
)
OPS: dict[tuple[str, str], OpSpec] = {(spec.domain, spec.op): spec for spec in OP_TABLE}


def op_spec(domain: str, op: str) -> OpSpec | None:
    """The table's entry for an op (``ai.onnx`` is the default domain), None for any other op."""
    return OPS.get((canonical_domain(domain), op))


def weight_slots(domain: str, op: str) -> tuple[int, ...]:
    spec = op_spec(domain, op)
    return spec.weight_slots if spec else ()


def role_of(use: OpUse) -> Role:
    """The role of a weight in its consumer; raises UnsupportedUse when it has none."""
    spec = op_spec(use.domain, use.op)
    if spec is None:
        raise UnsupportedUse(f"op {use.op} is not a supported weight-carrying op")
    try:
        role = spec.role(use)
    except (TypeError, ValueError, ZeroDivisionError) as exc:  # an attribute of the wrong type or value
        raise UnsupportedUse(f"{use.op} has a malformed attribute ({exc})") from None
    if role.fans and any(f.fan_in <= 0 or f.fan_out <= 0 for f in role.fans.values()):
        raise UnsupportedUse(f"{use.op} weight of shape {list(use.shape)} has no units on one side "
                             "(a zero-sized axis): no fan-based target")
    return role


def canonical_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain
