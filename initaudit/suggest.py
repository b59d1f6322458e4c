"""Fix suggestions: the scale that brings a layer to its target, and the init call
that draws it there in PyTorch, Keras and JAX."""
from __future__ import annotations

import math

from .fans import Fans
from .report import Suggestion
from .stats import TensorStats


def suggestion(target: str | None, gain: float, target_var: float, stats: TensorStats,
               fans: dict[str, Fans] | None, convention: str, op_scale: float = 1.0) -> Suggestion:
    """The named framework call when the framework's own fans give the target, else an explicit bound."""
    effective = stats.var * op_scale * op_scale
    scale = math.sqrt(target_var / effective)
    bound = math.sqrt(3.0 * target_var) / abs(op_scale)
    uniform_torch = f"torch.nn.init.uniform_(w, -{bound:.6g}, {bound:.6g})"
    uniform_keras = f"keras.initializers.RandomUniform(-{bound:.6g}, {bound:.6g})"
    uniform_jax = f"lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -{bound:.6g}, {bound:.6g})"
    ours = fans.get(convention) if fans else None
    torch_call, keras_call = uniform_torch, uniform_keras
    if fans and ours and op_scale == 1.0:
        gain_arg = "" if gain == 1.0 else f", gain={gain:.6g}"
        if target == "xavier":
            if fans["pytorch"] == ours:
                torch_call = f"torch.nn.init.xavier_uniform_(w{gain_arg})"
            if fans["keras"] == ours and gain == 1.0:
                keras_call = "keras.initializers.GlorotUniform()"
        elif target == "he" and fans["pytorch"].fan_in == ours.fan_in:
            nonlinearity = "relu" if abs(gain - math.sqrt(2)) < 1e-12 else None
            if nonlinearity:
                torch_call = "torch.nn.init.kaiming_uniform_(w, nonlinearity='relu')"
                if fans["keras"].fan_in == ours.fan_in:
                    keras_call = "keras.initializers.HeUniform()"
        elif target == "lecun" and fans["keras"].fan_in == ours.fan_in and gain == 1.0:
            keras_call = "keras.initializers.LecunUniform()"
    return Suggestion(scale=scale, target_std=math.sqrt(target_var), pytorch=torch_call, keras=keras_call,
                      jax=uniform_jax)
