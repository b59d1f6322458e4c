"""Fix suggestions: the scale that brings a layer to its target, and the init call
that draws it there in PyTorch, Keras and JAX.

A framework's named initializer is suggested only when that framework's own fan
rule gives the same fans as the convention in use (e.g. not for a depthwise conv,
where torch counts fan_out 288 instead of 9); otherwise an explicit uniform bound
√(3·target) is, which is right whatever the framework counts.  A fixed-std target
(``std:0.02``) is a normal draw of that std in every framework: no fans involved.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from initaudit.judge.schemes import TARGET_SCHEMES, fixed_std, usual_gain
from initaudit.measure.stats import TensorStats
from initaudit.trace.fans import Fans


def _torch(target: str, gain: float, fans: dict[str, Fans], ours: Fans) -> str | None:
    if target == "xavier" and fans["pytorch"] == ours:
        return "torch.nn.init.xavier_uniform_(w)" if gain == 1 else f"torch.nn.init.xavier_uniform_(w, gain={gain:.6g})"
    if target == "he" and fans["pytorch"].fan_in == ours.fan_in and abs(gain - usual_gain(target)) < 1e-12:
        return "torch.nn.init.kaiming_uniform_(w, nonlinearity='relu')"
    return None


def _variance_scaling(target: str, gain: float, fans: dict[str, Fans], ours: Fans) -> tuple[str, str] | None:
    """(Keras call, JAX call) when Keras/JAX fans (the same rule, reference §4.1) agree with ours."""
    scheme = TARGET_SCHEMES[target]
    mode, usual = scheme.mode, scheme.gain ** 2
    keras_fans = fans["keras"]
    same = keras_fans == ours if mode == "fan_avg" else keras_fans.fan_in == ours.fan_in
    if not same:
        return None
    scale = gain * gain
    named = scheme.keras
    if abs(scale - usual) < 1e-12:
        return (f"keras.initializers.{named}Uniform()",
                f"jax.nn.initializers.{named.lower()}_uniform()")
    return (f"keras.initializers.VarianceScaling({scale:.6g}, mode='{mode}', distribution='uniform')",
            f"jax.nn.initializers.variance_scaling({scale:.6g}, '{mode}', 'uniform')")


def suggestion(target: str | None, gain: float, target_var: float, stats: TensorStats,
               fans: dict[str, Fans] | None, convention: str, op_scale: float = 1.0) -> Suggestion:
    effective = stats.var * op_scale * op_scale
    bound = math.sqrt(3.0 * target_var) / abs(op_scale)
    torch_call = f"torch.nn.init.uniform_(w, -{bound:.6g}, {bound:.6g})"
    keras_call = f"keras.initializers.RandomUniform(-{bound:.6g}, {bound:.6g})"
    jax_call = f"lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -{bound:.6g}, {bound:.6g})"
    ours = fans.get(convention) if fans else None
    if target is not None and fixed_std(target) is not None:
        sigma = math.sqrt(target_var) / abs(op_scale)
        torch_call = f"torch.nn.init.normal_(w, std={sigma:.6g})"
        keras_call = f"keras.initializers.RandomNormal(stddev={sigma:.6g})"
        jax_call = f"jax.nn.initializers.normal({sigma:.6g})"
    elif fans and ours and op_scale == 1.0 and target in TARGET_SCHEMES:
        torch_call = _torch(target, gain, fans, ours) or torch_call
        named = _variance_scaling(target, gain, fans, ours)
        if named:
            keras_call, jax_call = named
    return Suggestion(scale=math.sqrt(target_var / effective), target_std=math.sqrt(target_var),
                      pytorch=torch_call, keras=keras_call, jax=jax_call)


@dataclass(frozen=True)
class Suggestion:
    """How to bring a layer to its target."""

    scale: float            # multiply the weights by this
    target_std: float
    pytorch: str
    keras: str
    jax: str
