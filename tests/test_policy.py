"""The inferred init policy (policy.py) on layers drawn with numpy: groups, dominance, noise."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from initaudit.judge.policy import Sample, breach, infer_policy, std_matches
from initaudit.judge.verdict import matches
from initaudit.measure.stats import TensorStats
from initaudit.trace.fans import Fans


def moments(values: np.ndarray) -> TensorStats:
    """Statistics by numpy in float64 (not initaudit's streaming kernel)."""
    v = values.astype(np.float64).ravel()
    centred = v - v.mean()
    var = float(np.mean(centred ** 2))
    return TensorStats(v.size, float(v.mean()), var, float(v.min()), float(v.max()),
                       float(np.mean(centred ** 4) / var ** 2 - 3.0), 0, int(np.sum(v == 0)))


def sample(key: int, values: np.ndarray, fan_in: int, fan_out: int) -> Sample:
    stats = moments(values)
    found = matches(stats, Fans(fan_in, fan_out))
    return Sample(key, f"layer{key}", stats.var, stats.count, stats.excess_kurtosis, found,
                  (("connectivity", found),))


def normal(rng, fan_in: int, fan_out: int, std: float) -> np.ndarray:
    return rng.normal(0.0, std, (fan_in, fan_out)).astype(np.float32)


def torch_default(rng, fan_in: int, fan_out: int) -> np.ndarray:
    bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform_(a=√5): U(±1/√fan_in), var 1/(3·fan_in)
    return rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32)


def xavier(rng, fan_in: int, fan_out: int) -> np.ndarray:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, (fan_in, fan_out)).astype(np.float32)


def gpt2_like(rng, d: int = 64, blocks: int = 4, missed: int | None = None) -> list[Sample]:
    """c_attn, c_proj, c_fc, c_proj per block; ``missed``: that block's c_fc left at torch's default."""
    out, residual = [], 0.02 / math.sqrt(2 * blocks)
    for b in range(blocks):
        for fi, fo, std, kind in ((d, 3 * d, 0.02, "attn"), (d, d, residual, "proj"),
                                  (d, 4 * d, 0.02, "fc"), (4 * d, d, residual, "proj")):
            values = torch_default(rng, fi, fo) if (kind == "fc" and b == missed) else normal(rng, fi, fo, std)
            out.append(sample(len(out), values, fi, fo))
    return out


def test_gpt2_two_std_groups_are_one_policy():
    layers = gpt2_like(np.random.default_rng(0))
    policy = infer_policy(layers)
    assert policy is not None and policy.kind == "std"
    assert sorted(g.std for g in policy.groups) == pytest.approx([0.02 / math.sqrt(8), 0.02], rel=0.02)
    assert len(policy.followers) == 16 and not any(breach(policy, s) for s in layers)
    assert std_matches(policy, layers[0]) == ("std:0.02",)


def test_one_missed_layer_is_named_with_the_policy():
    layers = gpt2_like(np.random.default_rng(1), missed=2)
    policy = infer_policy(layers)
    flagged = [s for s in layers if breach(policy, s)]
    assert [s.key for s in flagged] == [2 * 4 + 2]  # block 2's c_fc
    message = breach(policy, flagged[0]).message
    assert message.startswith("matches torch_default") and "the other 15 layers match std" in message
    named = sorted(float(v) for v in re.findall(r"std ([0-9.]+) \(", message))
    assert named == pytest.approx([0.02 / math.sqrt(8), 0.02], rel=0.02)


def test_the_issue_example_d256_flags_exactly_the_missed_layer():
    rng = np.random.default_rng(2)
    layers = gpt2_like(rng, d=256, missed=2)
    policy = infer_policy(layers)
    assert [s.key for s in layers if breach(policy, s)] == [10]


def test_a_fan_scheme_policy_beats_coincidental_std_groups():
    rng = np.random.default_rng(3)
    fans = [(75, 150), (150, 400), (400, 120), (120, 84), (84, 10), (64, 64), (64, 64), (64, 64)]
    layers = [sample(i, xavier(rng, fi, fo), fi, fo) for i, (fi, fo) in enumerate(fans)]
    policy = infer_policy(layers)
    assert policy is not None and policy.kind == "scheme" and policy.scheme == "xavier"
    assert policy.groups == () and std_matches(policy, layers[0]) == ()


def test_no_dominant_init_means_no_policy_and_no_findings():
    rng = np.random.default_rng(4)
    layers = [sample(0, xavier(rng, 300, 100), 300, 100), sample(1, xavier(rng, 100, 500), 100, 500),
              sample(2, torch_default(rng, 200, 50), 200, 50), sample(3, torch_default(rng, 50, 700), 50, 700),
              sample(4, normal(rng, 128, 128, 0.3), 128, 128), sample(5, normal(rng, 256, 64, 0.01), 256, 64)]
    assert infer_policy(layers) is None
    assert infer_policy(layers[:2]) is None  # too few layers to speak of a policy


def test_a_torch_default_majority_is_reported_but_flags_nothing():
    rng = np.random.default_rng(5)
    layers = [sample(i, torch_default(rng, 128 * (i + 1), 64), 128 * (i + 1), 64) for i in range(5)]
    layers.append(sample(5, xavier(rng, 64, 192), 64, 192))  # e.g. MultiheadAttention's packed in_proj
    policy = infer_policy(layers)
    assert policy is not None and policy.scheme == "torch_default" and not policy.chosen
    assert breach(policy, layers[5]) is None


def test_tiny_layers_are_not_flagged_on_noise():
    """200 models of 16 layers, 8 of them 4×4 (16 values), all N(0, 0.02): (almost) no false IA501."""
    flagged = 0
    for seed in range(200):
        rng = np.random.default_rng(1000 + seed)
        layers = [sample(i, normal(rng, 4, 4, 0.02), 4, 4) for i in range(8)]
        layers += [sample(8 + i, normal(rng, 64, 256, 0.02), 64, 256) for i in range(8)]
        policy = infer_policy(layers)
        assert policy is not None and policy.kind == "std"
        flagged += sum(breach(policy, s) is not None for s in layers)
    assert flagged <= 2  # 3,200 layers; the 3.5 σ test alone allows about 0.05 % (1.6)


def he(rng, fan_in: int, fan_out: int, mode: str) -> np.ndarray:
    """kaiming_normal_ with ReLU's gain: N(0, 2/fan) on the mode's fan."""
    return normal(rng, fan_in, fan_out, math.sqrt(2.0 / (fan_in if mode == "fan_in" else fan_out)))


def test_equal_stds_of_layers_fan_schemes_explain_are_no_fixed_std_policy():
    """Consecutive layers: He fan_out on fans (75, 200) and He fan_in on (200, 400) both draw var 2/200;
    Xavier on (144, 288) and He fan_out on (288, 432) both draw var 2/432.  Two groups of equal stds
    (4 of 6 layers) that no fixed std produced; the two Xavier layers must not break a 'policy'."""
    rng = np.random.default_rng(19)
    layers = [sample(0, he(rng, 75, 200, "fan_out"), 75, 200), sample(1, he(rng, 200, 400, "fan_in"), 200, 400),
              sample(2, normal(rng, 144, 288, math.sqrt(2.0 / 432)), 144, 288),
              sample(3, he(rng, 288, 432, "fan_out"), 288, 432),
              sample(4, xavier(rng, 768, 128), 768, 128), sample(5, xavier(rng, 128, 10), 128, 10)]
    assert math.sqrt(2.0 / 200) == pytest.approx(0.1) and math.sqrt(2.0 / 432) == pytest.approx(0.068, abs=5e-4)
    policy = infer_policy(layers)
    # Xavier explains 3 of the 6 (layers 2, 4, 5): not more than half, so no policy at all
    assert policy is None
    assert not any(breach(policy, s) for s in layers)


def test_the_mixed_scheme_cnn_fixture_has_no_policy_and_no_ia501():
    """tests/fixtures/policy/mixed_schemes_cnn.onnx (scripts/make_policy_fixtures.py): six layers, each
    drawn by a fan-based scheme (He fan_out, He fan_in, Xavier normal, He fan_out, Xavier uniform ×2)."""
    import onnx
    from onnx import numpy_helper

    import initaudit

    path = Path(__file__).resolve().parent / "fixtures" / "policy" / "mixed_schemes_cnn.onnx"
    # the generator's formulas, checked on the stored values (numpy float64)
    stds = {t.name: float(numpy_helper.to_array(t).astype(np.float64).std())
            for t in onnx.load(str(path)).graph.initializer if t.name.endswith(".weight")}
    expected = {"conv1.weight": math.sqrt(2 / 200), "conv2.weight": math.sqrt(2 / 200),
                "conv3.weight": math.sqrt(2 / 432), "conv4.weight": math.sqrt(2 / 432),
                "fc1.weight": math.sqrt(2 / 896), "fc2.weight": math.sqrt(2 / 138)}
    assert stds == pytest.approx(expected, rel=0.05)
    model = initaudit.audit(path, jobs=1).models[0]
    assert model.policy is None
    assert not any(f.code == "IA501" for layer in model.layers for f in layer.findings)
    fc = {layer.name: layer for layer in model.layers if layer.name.startswith("fc")}
    # the Xavier layers, held to the default Xavier target, pass it
    assert {name: layer.status for name, layer in fc.items()} == {"fc1.weight": "ok", "fc2.weight": "ok"}


def test_a_std_group_with_one_layer_no_scheme_explains_is_still_a_policy():
    """N(0, 0.05) on four layers: on fans (400, 400) and (200, 600) Xavier's std is √(2/800) = 0.05 too,
    on (64, 256) and (96, 128) no scheme gives 0.05; the group is a fixed std, all four follow it."""
    assert math.sqrt(2.0 / 800) == pytest.approx(0.05)
    rng = np.random.default_rng(20)
    fans = [(400, 400), (200, 600), (64, 256), (96, 128)]
    layers = [sample(i, normal(rng, fi, fo, 0.05), fi, fo) for i, (fi, fo) in enumerate(fans)]
    assert [("xavier" in s.matches) for s in layers] == [True, True, False, False]
    assert [s.matches for s in layers[2:]] == [("other",), ("other",)]
    policy = infer_policy(layers)
    assert policy is not None and policy.kind == "std"
    assert [g.std for g in policy.groups] == [0.05] and len(policy.followers) == 4


def test_a_tie_between_a_fan_scheme_and_std_groups_goes_to_the_fan_scheme():
    """Five layers: two Xavier only (fans (300, 100), (100, 500)), one N(0, 0.05) on (400, 400), where Xavier's
    std √(2/800) is 0.05 too, and two N(0, 0.05) no scheme explains.  Xavier covers 3, std 0.05 covers 3."""
    rng = np.random.default_rng(22)
    layers = [sample(0, xavier(rng, 300, 100), 300, 100), sample(1, xavier(rng, 100, 500), 100, 500),
              sample(2, normal(rng, 400, 400, 0.05), 400, 400),
              sample(3, normal(rng, 64, 256, 0.05), 64, 256), sample(4, normal(rng, 96, 128, 0.05), 96, 128)]
    assert [("xavier" in s.matches) for s in layers] == [True, True, True, False, False]
    policy = infer_policy(layers)
    assert policy is not None and (policy.kind, policy.scheme) == ("scheme", "xavier")
    assert policy.followers == {0, 1, 2} and policy.groups == ()
    assert [s.key for s in layers if breach(policy, s)] == [3, 4]
