"""Fix suggestions (``judge/suggest.py``): the scale to the target and the init call in PyTorch, Keras and
JAX, named only where the framework's own fans agree with the convention in use."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from modelkit import model, save, tensor
from onnx import helper

import initaudit

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def test_suggestions(tmp_path):
    lenet = {layer.name: layer for layer in initaudit.audit(SAMPLES / "lenet_torch_default.onnx").models[0].layers}
    fc1 = lenet["fc1.weight"]
    assert fc1.suggestion.scale == pytest.approx(math.sqrt(fc1.target_var / fc1.stats.var))
    assert fc1.suggestion.pytorch == "torch.nn.init.xavier_uniform_(w)"
    assert fc1.suggestion.keras == "keras.initializers.GlorotUniform()"
    assert fc1.suggestion.jax == "jax.nn.initializers.glorot_uniform()"
    auto = initaudit.audit(SAMPLES / "lenet_torch_default.onnx", target="auto").models[0].layers[2].suggestion
    assert auto.pytorch == "torch.nn.init.kaiming_uniform_(w, nonlinearity='relu')"
    assert auto.jax == "jax.nn.initializers.he_uniform()"
    # depthwise: torch's own fans (9, 288) would not give the connectivity target, so an explicit bound
    rng = np.random.default_rng(8)
    m = model([helper.make_node("Conv", ["x", "w"], ["y"], group=32)],
              [tensor("w", rng.normal(0, 1, (32, 1, 3, 3)).astype(np.float32))])
    layer = initaudit.audit(save(m, tmp_path)).models[0].layers[0]
    bound = math.sqrt(3 * 2 / 18)
    assert layer.suggestion.pytorch == f"torch.nn.init.uniform_(w, -{bound:.6g}, {bound:.6g})"
    assert initaudit.audit(SAMPLES / "lenet_xavier.onnx").models[0].layers[0].suggestion is None
