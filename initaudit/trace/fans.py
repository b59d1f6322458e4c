"""Fan-in / fan-out arithmetic: pure functions of shapes, no I/O.

Three conventions (reference §1):

* ``connectivity`` — what the ONNX operator really connects, within one group:
  fan_in = input units feeding one output unit, fan_out = output units fed by one
  input unit (Glorot's own definition).
* ``pytorch`` — ``torch.nn.init._calculate_fan_in_and_fan_out`` applied to the
  tensor as PyTorch stores it (dim 0 = "out", dim 1 = "in", the rest receptive field).
* ``keras`` — ``keras.initializers.compute_fans`` applied to the kernel as Keras
  stores it (last dim = out, second to last = in, leading dims receptive field).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

Convention = Literal["connectivity", "pytorch", "keras"]
CONVENTIONS: tuple[Convention, ...] = ("connectivity", "pytorch", "keras")

#: Letters with a meaning of their own in a layout string; every other letter is a
#: receptive-field (spatial) axis.
INPUT_AXIS, OUTPUT_AXIS, BATCH_AXIS = "I", "O", "B"


@dataclass(frozen=True)
class Fans:
    fan_in: int
    fan_out: int

    def as_list(self) -> list[int]:
        return [self.fan_in, self.fan_out]


def receptive_field(shape: Iterable[int]) -> int:
    return math.prod(shape)


def spatial_letters(rank: int) -> str:
    """Letters naming ``rank`` spatial axes: W, HW, DHW, then S-runs beyond three."""
    return {0: "", 1: "W", 2: "HW", 3: "DHW"}.get(rank, "S" * rank)


def torch_fans(shape: Sequence[int]) -> Fans:
    """``torch.nn.init._calculate_fan_in_and_fan_out`` on a PyTorch-side shape."""
    if len(shape) < 2:
        raise ValueError(f"torch's fan rule needs at least 2 dimensions, got shape {list(shape)}")
    rf = receptive_field(shape[2:])
    return Fans(shape[1] * rf, shape[0] * rf)


def keras_fans(shape: Sequence[int]) -> Fans:
    """``keras.initializers.compute_fans`` (no explicit axes) on a Keras-side shape."""
    if len(shape) == 0:
        return Fans(1, 1)
    if len(shape) == 1:
        return Fans(shape[0], shape[0])
    rf = receptive_field(shape[:-2])
    return Fans(shape[-2] * rf, shape[-1] * rf)


def conv_fans(weight_shape: Sequence[int], groups: int) -> dict[str, Fans]:
    """ONNX Conv ``W[M, C/g, k...]``.

    Connectivity divides the output channels by the groups (one input channel feeds
    only the M/g filters of its own group); PyTorch does not (pytorch #23854).
    Keras builds a depthwise conv (``group == C`` and one input channel per group)
    as ``DepthwiseConv2D`` with kernel ``[k..., C, m]``, whose fan_in counts all C.
    """
    m, c_per_group, *kernel = weight_shape
    k = receptive_field(kernel)
    torch_side = torch_fans(weight_shape)
    keras_side = torch_side
    if groups > 1 and c_per_group == 1:
        keras_side = Fans(groups * k, (m // groups) * k)
    return {
        "connectivity": Fans(c_per_group * k, (m // groups) * k),
        "pytorch": torch_side,
        "keras": keras_side,
    }


def conv_transpose_fans(weight_shape: Sequence[int], groups: int) -> dict[str, Fans]:
    """ONNX ConvTranspose ``W[C, M/g, k...]`` (stride 1).

    Each output unit is fed by (C/g)·k inputs; each input reaches (M/g)·k outputs.
    PyTorch and Keras both read the output-channel axis as "in" (pytorch #7865,
    tensorflow #31192), so their fans are swapped relative to the data flow.
    """
    c, m_per_group, *kernel = weight_shape
    k = receptive_field(kernel)
    framework_side = Fans(m_per_group * k, c * k)
    return {
        "connectivity": Fans((c // groups) * k, m_per_group * k),
        "pytorch": framework_side,
        "keras": framework_side,
    }


def same_fans(fans: Fans) -> dict[str, Fans]:
    """For ops where every convention agrees (plain matrices, Einsum with known axes)."""
    return {name: fans for name in CONVENTIONS}


def layout_fans(shape: Sequence[int], layout: str, groups: int = 1) -> Fans:
    """Connectivity fans of a tensor whose axes are named by ``layout``.

    ``I`` = input units, ``O`` = output units, ``B`` = independent batch axis,
    any other letter = receptive field.  With ``groups`` > 1 the axis holding the
    full channel count is divided: ``O`` for convolution layouts (``OIHW``,
    ``HWIO``), ``I`` for the ONNX ConvTranspose layout (``IOHW``: I leads).

    Example: ``layout_fans([5, 5, 3, 6], "HWIO")`` → ``Fans(75, 150)``.
    """
    layout = layout.upper()
    if len(layout) != len(shape):
        raise ValueError(
            f"layout {layout!r} has {len(layout)} axes but the shape {list(shape)} has {len(shape)}"
        )
    for letter in (INPUT_AXIS, OUTPUT_AXIS):
        if layout.count(letter) != 1:
            raise ValueError(f"layout {layout!r} needs exactly one {letter!r} axis")
    if groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups}")
    n_in = shape[layout.index(INPUT_AXIS)]
    n_out = shape[layout.index(OUTPUT_AXIS)]
    k = receptive_field(d for d, a in zip(shape, layout) if a not in "IOB")
    if groups > 1:
        transposed = layout.startswith("IO") and len(layout) > 2
        full = n_in if transposed else n_out
        if full % groups:
            axis = "I" if transposed else "O"
            raise ValueError(f"{axis} axis of size {full} is not divisible by groups={groups}")
        if transposed:
            n_in //= groups
        else:
            n_out //= groups
    return Fans(n_in * k, n_out * k)
