"""Initialization schemes as target variances of a layer's fans (reference §2.3, §2.4, §7).

Var(W) of each scheme, with fi = fan_in and fo = fan_out:

* Xavier/Glorot (Glorot & Bengio 2010): gain²·2/(fi+fo)
* He/Kaiming (He et al. 2015): gain²/fan with gain √2 for ReLU → 2/fi (fan_in mode)
* LeCun (LeCun et al. 1998, SELU nets): 1/fi
* PyTorch's default (kaiming_uniform_ with a=√5): gain² = 2/(1+5) → 1/(3·fi)
* A fixed std σ (``std:0.02``, the Hugging Face ``initializer_range``): σ², whatever the fans
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from initaudit.trace.downstream import Downstream
from initaudit.trace.fans import Fans

#: The value families an init draws from (``verdict.distribution``'s names).
INIT_FAMILIES = ("uniform", "normal", "truncated_normal")


@dataclass(frozen=True)
class Scheme:
    """One entry of the ``matches`` vocabulary (JSON contract): a fan-based init scheme."""

    name: str
    variance: Callable[[Fans], float]      # Var(W) it draws, with its usual gain
    text: str                              # in words, for messages
    families: tuple[str, ...] = INIT_FAMILIES   # the value families it draws from
    #: the ``--target`` that holds a layer to it, with that target's usual gain, and Keras' /
    #: JAX's VarianceScaling mode and initializer name for it
    target: str | None = None
    gain: float = 1.0
    mode: str = ""
    keras: str = ""
    chosen: bool = True                    # False: the framework's default, which nobody chose
    by_variance: bool = True               # matched by its variance (zero: only by an all-zero layer)


#: Every scheme, in the report order of ``matches``.  A model's policy ties go to the earlier one in
#: ``POLICY_ORDER``.
SCHEMES: tuple[Scheme, ...] = (
    Scheme("xavier", lambda f: 2.0 / (f.fan_in + f.fan_out), "Xavier/Glorot (Keras' glorot_uniform)",
           target="xavier", mode="fan_avg", keras="Glorot"),
    Scheme("he_fan_in", lambda f: 2.0 / f.fan_in, "He (fan_in)", target="he", gain=math.sqrt(2.0), mode="fan_in",
           keras="He"),
    Scheme("he_fan_out", lambda f: 2.0 / f.fan_out, "He (fan_out)"),
    Scheme("lecun", lambda f: 1.0 / f.fan_in, "LeCun", target="lecun", mode="fan_in", keras="Lecun"),
    Scheme("torch_default", lambda f: 1.0 / (3.0 * f.fan_in), "PyTorch's default U(±1/√fan_in)",
           families=("uniform",), chosen=False),
    Scheme("zero", lambda f: 0.0, "all zero", families=(), by_variance=False),
)
SCHEME: dict[str, Scheme] = {s.name: s for s in SCHEMES}
#: The order in which a model's policy breaks ties between schemes that cover as many layers.
POLICY_ORDER: tuple[str, ...] = ("xavier", "he_fan_in", "lecun", "he_fan_out", "torch_default")
#: ``--target`` name → the scheme it holds a layer to.
TARGET_SCHEMES: dict[str, Scheme] = {s.target: s for s in SCHEMES if s.target}
TARGETS: tuple[str, ...] = (*TARGET_SCHEMES, "auto")
#: How a fixed-std target is written: ``std:0.02``.
STD_PREFIX = "std:"


def usual_gain(target: str) -> float:
    """The gain a target holds a layer to unless told otherwise: He's √2 (ReLU), 1 for the other
    schemes and for a fixed std."""
    scheme = TARGET_SCHEMES.get(target)
    return scheme.gain if scheme is not None else 1.0


def fixed_std(target: str) -> float | None:
    """σ of a ``std:VALUE`` target; None for a fan-based scheme.

    Raises:
        ValueError: ``std:`` followed by something that is not a positive finite number.
    """
    if not target.startswith(STD_PREFIX):
        return None
    try:
        value = float(target[len(STD_PREFIX):])
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"target {target!r}: write a positive standard deviation, e.g. std:0.02")
    return value


def std_target(value: float) -> str:
    """The canonical spelling of a fixed-std target (``std:0.02``)."""
    return f"{STD_PREFIX}{value:.6g}"


def normalize_target(target: str) -> str:
    """A scheme name as is, a fixed std spelled canonically (``std:2e-2`` → ``std:0.02``).

    Raises:
        ValueError: neither a known scheme nor ``std:VALUE``.
    """
    value = fixed_std(target)
    if value is not None:
        return std_target(value)
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)} or std:VALUE")
    return target


def target_variance(target: str, fans: Fans, gain: float | None = None) -> float:
    """The variance ``target`` asks of a layer with these fans.

    ``gain`` defaults to the scheme's usual one: 1 for Xavier, LeCun and a fixed
    std, √2 (ReLU) for He.
    """
    std = fixed_std(target)
    if std is not None:
        return (gain or 1.0) ** 2 * std * std
    scheme = TARGET_SCHEMES.get(target)
    if scheme is None:
        raise ValueError(f"unknown target {target!r}; choose one of {list(TARGETS)}")
    g2 = (gain or scheme.gain) ** 2
    return g2 * 2.0 / (fans.fan_in + fans.fan_out) if scheme.mode == "fan_avg" else g2 / fans.fan_in


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """``torch.nn.init.calculate_gain``: the factor a nonlinearity asks the std to carry."""
    if nonlinearity in ("linear", "sigmoid", "identity") or nonlinearity.startswith(("conv", "conv_transpose")):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1.0 + slope * slope))
    if nonlinearity == "selu":
        return 0.75
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


#: Nonlinearity → (target, nonlinearity name for torch's calculate_gain).
AUTO_TARGETS = {
    "Relu": ("he", "relu"),
    "LeakyRelu": ("he", "leaky_relu"),
    "PRelu": ("he", "leaky_relu"),
    "Tanh": ("xavier", "tanh"),
    "Sigmoid": ("xavier", "sigmoid"),
    "Selu": ("lecun", "linear"),
}


def auto_target(down: Downstream) -> tuple[str, float, str]:
    """(target, gain, reason) for ``--target auto``."""
    if down.activation in AUTO_TARGETS:
        target, nonlinearity = AUTO_TARGETS[down.activation]
        gain = calculate_gain(nonlinearity, down.alpha)
        detail = f"({nonlinearity}, gain {gain:.3g})" if down.alpha is None else f"(alpha {down.alpha:g}, gain {gain:.3g})"
        return target, gain, f"followed by {down.activation} {detail}"
    if down.activation is None:
        return "xavier", 1.0, "no nonlinearity follows"
    return "xavier", 1.0, f"followed by {down.activation}, which has no standard gain"


def activation_factor(down: Downstream) -> float:
    """How a nonlinearity scales the second moment it passes on: 1/gain² (ReLU halves it).

    The He/Xavier derivations pick the gain so that ``fan_in · Var(W) · factor = 1``.
    SELU's self-normalizing fixed point keeps the variance (factor 1 with LeCun init).
    """
    if down.activation in ("Relu", "LeakyRelu", "PRelu", "Tanh"):
        _, nonlinearity = AUTO_TARGETS[down.activation]
        return 1.0 / calculate_gain(nonlinearity, down.alpha) ** 2
    return 1.0
