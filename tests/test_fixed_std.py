"""``--target std:VALUE``: a fixed standard deviation, whatever the fans."""
from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper

from initaudit import audit
from initaudit.cli.main import main
from initaudit.judge.schemes import fixed_std, normalize_target, target_variance
from initaudit.trace.fans import Fans
from tests.modelkit import model, save, tensor


def chain(weights: dict[str, np.ndarray]):
    """x → MatMul(w1) → MatMul(w2) → … → y, no nonlinearity between them."""
    nodes, previous = [], "x"
    for i, name in enumerate(weights):
        out = "y" if i == len(weights) - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [previous, name], [out], name=f"/{name}/MatMul"))
        previous = out
    return model(nodes, [tensor(n, w) for n, w in weights.items()])


def test_fixed_std_variance_ignores_fans():
    assert target_variance("std:0.02", Fans(4096, 11008)) == pytest.approx(0.02 ** 2)
    assert target_variance("std:0.02", Fans(3, 5)) == pytest.approx(4e-4)
    assert target_variance("std:0.02", Fans(3, 5), gain=2.0) == pytest.approx(16e-4)
    assert fixed_std("xavier") is None
    assert normalize_target("std:2e-2") == "std:0.02"


@pytest.mark.parametrize("bad", ["std:", "std:abc", "std:-0.1", "std:0", "std:nan", "std:inf", "gaussian"])
def test_bad_targets_are_one_line_errors(tmp_path, capsys, bad):
    path = save(chain({"w": np.zeros((4, 4), np.float32)}), tmp_path)
    assert main([str(path), "--target", bad]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "target" in err


def test_a_std_002_layer_passes_and_a_wider_one_fails_with_a_normal_fix(tmp_path, capsys):
    rng = np.random.default_rng(0)
    # 4096 → 11008 at std 0.02 holds 3× the Xavier variance 2/(4096+11008) (the example, scaled down)
    good = rng.normal(0, 0.02, (512, 1376)).astype(np.float32)
    wide = rng.normal(0, 0.05, (1376, 64)).astype(np.float32)
    path = save(chain({"up.weight": good, "down.weight": wide}), tmp_path)
    report = audit(path, target="std:0.02", jobs=1)
    up, down = report.models[0].layers
    assert up.target == "std:0.02" and up.target_var == pytest.approx(4e-4)
    assert up.status == "ok" and up.ratio == pytest.approx(float(good.astype(np.float64).var()) / 4e-4, rel=1e-6)
    assert down.status == "fail" and down.ratio == pytest.approx(6.25, rel=0.05)
    assert down.suggestion.pytorch == "torch.nn.init.normal_(w, std=0.02)"
    assert down.suggestion.keras == "keras.initializers.RandomNormal(stddev=0.02)"
    assert down.suggestion.jax == "jax.nn.initializers.normal(0.02)"
    assert down.suggestion.scale == pytest.approx(0.4, rel=0.02)

    assert main([str(path), "--target", "std:0.02", "--format", "json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["target"] == "std:0.02"
    assert [layer["target"] for layer in out["layers"]] == ["std:0.02", "std:0.02"]
    # the same layers against Xavier: 0.02² = 4e-4 vs 2/(512+1376) = 1.06e-3
    xavier = audit(path, jobs=1).models[0].layers[0]
    assert xavier.ratio == pytest.approx(4e-4 / (2 / (512 + 1376)), rel=0.02)


def test_std_target_in_config(tmp_path, capsys):
    rng = np.random.default_rng(1)
    path = save(chain({"w": rng.normal(0, 0.02, (256, 256)).astype(np.float32)}), tmp_path)
    config = tmp_path / "initaudit.toml"
    config.write_text('target = "std:0.02"\n')
    assert main([str(path), "--config", str(config), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["layers"][0]["target"] == "std:0.02"
