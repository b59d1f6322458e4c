"""The inferred init policy (policy.py) on layers drawn with numpy: groups, dominance, noise."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from initaudit.judge.policy import (
    Policy,
    Sample,
    StdGroup,
    _fits,
    _round_std,
    breach,
    infer_policy,
    policy_target,
    std_groups,
    std_matches,
)
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


# --- the pure helpers, at both sides of each limit (from mutation testing) ---------------------------------------


def bare(key: int, std: float, count: int, kurtosis: float | None) -> Sample:
    return Sample(key, f"layer{key}", std * std, count, kurtosis, ())


def test_a_round_std_within_the_0_2_percent_floor():
    """10⁷ values: the standard error ½·√(2/N) is 0.022 %, so the floor of 0.2 % decides."""
    assert _round_std([bare(0, 0.019965, 10**7, 0.0)], 0.019965) == 0.02      # 0.02 is 0.175 % away
    assert _round_std([bare(0, 0.01996, 10**7, 0.0)], 0.01996) == 0.01996     # 0.2004 %: kept as measured
    # 3 significant digits when 1 and 2 are too coarse: 0.0213 is 0.066 % from 0.021314 (0.021 is 1.5 %)
    assert _round_std([bare(0, 0.021314, 10**7, 0.0)], 0.021314) == 0.0213


def test_a_round_std_within_one_standard_error_of_the_pooled_std():
    """1,500 values of κ = -1.2 and 500 of unknown κ (taken as 0): pooled κ = -0.9, N = 2,000, so the
    tolerance is ½·√(1.1/2000) = 1.17 %; 0.02 at 1.12 % is taken, at 1.23 % it is not (0.0198 is)."""
    tolerance = 0.5 * math.sqrt((2.0 - 0.9) / 2000)
    assert 0.0112 < tolerance < 0.0123
    for rel, expected in ((0.0112, 0.02), (0.0123, 0.0198)):
        std = 0.02 / (1 + rel)
        assert _round_std([bare(0, std, 1500, -1.2), bare(1, std, 500, None)], std) == expected


def test_a_round_std_clamps_the_pooled_kurtosis_at_minus_1_2():
    """κ = -1.8 on 2,000 values counts as -1.2 (no tails lighter than the uniform's): tolerance
    ½·√(0.8/2000) = 1 %, so 0.02 at 0.8 % is taken."""
    std = 0.02 / 1.008
    assert _round_std([bare(0, std, 2000, -1.8)], std) == 0.02


def test_a_round_std_takes_the_fewest_digits_that_fit():
    # 120 values: tolerance ½·√(2/120) = 6.5 %, 0.02 is 6.1 % below 0.0213 → 1 digit
    assert abs(0.02 / 0.0213 - 1) < 0.5 * math.sqrt(2 / 120)
    assert _round_std([bare(0, 0.0213, 120, 0.0)], 0.0213) == 0.02
    # 1,250 values: tolerance 2 %: 0.02 (6.5 % away) is too coarse, 0.021 (1.4 %) is not → 2 digits
    assert _round_std([bare(0, 0.0213, 1250, 0.0)], 0.0213) == 0.021


def test_fits_widens_the_band_by_the_layers_kurtosis():
    """10⁴ values at 1.10× the variance: outside the normal band (≈ ×1.07 at 3.5 σ, 2 % slack), inside the
    band of κ = 10 (√((2 + 10)/2) ≈ 2.4× wider)."""
    assert _fits(Sample(0, "t", 1.10, 10_000, 10.0, ()), 1.0)
    assert not _fits(Sample(0, "n", 1.10, 10_000, None, ()), 1.0)
    assert not _fits(Sample(0, "z", 1.0, 10_000, 0.0, ()), 0.0)


def test_matches_under_an_unknown_convention_is_empty():
    s = Sample(0, "w", 0.01, 100, 0.0, ("xavier",), (("connectivity", ("xavier",)), ("pytorch", ("lecun",))))
    assert s.matches_under("pytorch") == ("lecun",) and s.matches_under("keras") == ()


def policy_of(kind: str, scheme: str | None = None, groups: tuple[StdGroup, ...] = (),
              convention: str | None = "connectivity") -> Policy:
    return Policy(kind, scheme, convention if kind == "scheme" else None, groups, frozenset({0, 1, 2}), 4,
                  ("a", "b", "c"), "connectivity")


def test_policy_target_for_auto():
    layer = bare(3, 0.05, 1000, 0.0)
    xavier_policy = policy_of("scheme", "xavier")
    assert policy_target(xavier_policy, layer, covered=True) == (
        "xavier", 1.0, "the model's policy (xavier: 3 of 4 layers)", "connectivity")
    he = policy_target(policy_of("scheme", "he_fan_in", convention="pytorch"), layer, covered=False)
    assert he == ("he", pytest.approx(math.sqrt(2)), "the model's policy (he_fan_in (pytorch fans): 3 of 4 layers)",
                  "pytorch")
    # He fan_out has no --target, PyTorch's default is nobody's choice: the nonlinearity rule stays
    assert policy_target(policy_of("scheme", "he_fan_out"), layer, covered=False) is None
    assert policy_target(policy_of("scheme", "torch_default"), layer, covered=False) is None
    # a fixed std holds only the layers no nonlinearity rule covers, to the nearest group on a log scale
    groups = (StdGroup(0.02, (0, 1)), StdGroup(0.1, (2,)))
    assert policy_target(policy_of("std", groups=groups), layer, covered=True) is None
    # 0.05 is 2.5× 0.02 and 2× 0.1 away: the 0.1 group
    assert policy_target(policy_of("std", groups=groups), layer, covered=False) == (
        "std:0.1", 1.0, "the model's policy (std 0.02 (2 layers) + std 0.1 (1 layers): 3 of 4 layers)", None)


#: fans on which no fan-based scheme gives std 0.02 or 0.05 (Xavier: √(2/(fi+fo)) ≥ 0.079 here, LeCun ≥ 0.088,
#: He ≥ 0.088, PyTorch's default 1/√(3·fi) ≥ 0.051 but ≠ 0.05 beyond noise at these sizes)
PLAIN = [(64, 192), (64, 256), (96, 160), (80, 192), (64, 224)]


def fixed(rng, key: int, std: float) -> Sample:
    fi, fo = PLAIN[key % len(PLAIN)]
    return sample(key, normal(rng, fi, fo, std), fi, fo)


def test_only_layers_of_two_values_or_more_and_a_positive_finite_variance_are_counted():
    rng = np.random.default_rng(30)
    layers = [fixed(rng, i, 0.02) for i in range(4)]
    two = Sample(4, "two", 0.0004, 2, -2.0, ("other",))          # 2 values are enough: usable, and it fits
    left_out = [Sample(5, "one", 0.0004, 1, None, ("other",)), Sample(6, "flat", 0.0, 100, None, ("zero",)),
                Sample(7, "inf", math.inf, 100, None, ("other",)), Sample(8, "nan", math.nan, 100, None, ())]
    policy = infer_policy(layers + [two] + left_out)
    assert policy is not None and policy.layers == 5 and policy.followers == {0, 1, 2, 3, 4}


def test_samples_without_conventions_are_read_under_connectivity():
    rng = np.random.default_rng(31)
    layers = [Sample(i, f"l{i}", s.var, s.count, s.kurtosis, s.matches)  # no by_convention
              for i, s in enumerate(sample(i, xavier(rng, 64 * (i + 1), 32), 64 * (i + 1), 32) for i in range(4))]
    policy = infer_policy(layers)
    assert policy is not None and (policy.scheme, policy.convention, policy.in_use) == (
        "xavier", "connectivity", "connectivity")


def test_a_std_policy_names_no_scheme_and_no_convention():
    policy = infer_policy([fixed(np.random.default_rng(32), i, 0.02) for i in range(5)])
    assert policy is not None and policy.kind == "std"
    assert (policy.scheme, policy.convention) == (None, None)


def test_two_groups_of_two_layers_make_a_policy():
    """4 layers: two N(0, 0.02), two N(0, 0.05); a group needs max(2, 10 % of 4) = 2 layers."""
    rng = np.random.default_rng(33)
    layers = [fixed(rng, 0, 0.02), fixed(rng, 1, 0.02), fixed(rng, 2, 0.05), fixed(rng, 3, 0.05)]
    policy = infer_policy(layers)
    assert policy is not None and [g.std for g in policy.groups] == pytest.approx([0.02, 0.05], rel=0.02)
    assert [sorted(g.members) for g in policy.groups] == [[0, 1], [2, 3]]


def test_a_group_needs_ten_percent_of_thirty_layers():
    """30 layers: a group needs max(2, ⌈3.0⌉) = 3; three N(0, 0.05) layers are one, two are not."""
    rng = np.random.default_rng(34)
    three = [fixed(rng, i, 0.02) for i in range(27)] + [fixed(rng, 27 + i, 0.05) for i in range(3)]
    policy = infer_policy(three)
    assert policy is not None and [len(g.members) for g in policy.groups] == [27, 3]
    assert [g.std for g in policy.groups] == pytest.approx([0.02, 0.05], rel=0.02)
    assert not any(breach(policy, s) for s in three)
    two = [fixed(rng, i, 0.02) for i in range(28)] + [fixed(rng, 28 + i, 0.05) for i in range(2)]
    policy = infer_policy(two)
    assert policy is not None and [len(g.members) for g in policy.groups] == [28]
    assert [s.key for s in two if breach(policy, s)] == [28, 29]


def test_at_most_three_groups_the_largest_first():
    """4 + 3 + 2 + 2 layers at four stds (a group needs 2 of 11): the three largest groups, largest first
    (a tie between the two 2-layer groups goes to the smaller std)."""
    rng = np.random.default_rng(35)
    stds = [0.02] * 4 + [0.05] * 3 + [0.2] * 2 + [0.008] * 2
    layers = [fixed(rng, i, std) for i, std in enumerate(stds)]
    policy = infer_policy(layers)
    assert policy is not None and [len(g.members) for g in policy.groups] == [4, 3, 2]
    assert [g.std for g in policy.groups] == pytest.approx([0.02, 0.05, 0.008], rel=0.02)
    assert [s.key for s in layers if breach(policy, s)] == [7, 8]


def test_the_largest_layer_seeds_a_group():
    """A 10⁵-value layer of variance 1 and two 100-value layers of 1.3 and 1.25: the small ones are within
    their own noise of 1 (their band reaches ≈ ×1.7), so one group, centred on the large layer."""
    big, small, other = Sample(0, "big", 1.0, 100_000, 0.0, ()), Sample(1, "s", 1.3, 100, 0.0, ()), Sample(
        2, "t", 1.25, 100, 0.0, ())
    [group] = std_groups([small, other, big])
    assert sorted(group.members) == [0, 1, 2]
    assert group.std == pytest.approx(math.sqrt((100_000 + 130 + 125) / 100_200), rel=1e-3)


def with_matches(s: Sample, found: tuple[str, ...]) -> Sample:
    return Sample(s.key, s.name, s.var, s.count, s.kurtosis, found, (("connectivity", found),))


def test_breach_messages_name_what_the_layer_got_and_the_policy():
    one = policy_of("std", groups=(StdGroup(0.02, (0, 1, 2)),))
    layer = Sample(3, "w", 0.05 ** 2, 1000, 0.0, ("other",))
    assert breach(one, layer).message == "std 0.05, which matches no scheme; the other 3 layers match std 0.02"
    two = policy_of("std", groups=(StdGroup(0.02, (0, 1)), StdGroup(0.00707, (2,))))
    got = with_matches(layer, ("he_fan_out", "lecun"))
    assert breach(two, got).message == (
        "matches he_fan_out and lecun (std 0.05); the other 3 layers match std 0.02 (2) or std 0.00707 (1)")
    scheme = policy_of("scheme", "xavier", convention="pytorch")
    assert breach(scheme, with_matches(layer, ("torch_default",))).message == (
        "matches torch_default (std 0.05); the other 3 layers match xavier (pytorch fans)")
    assert breach(scheme, layer).code == "IA501" and breach(scheme, layer).severity == "fail"


def test_breach_skips_followers_and_layers_without_a_spread():
    policy = policy_of("std", groups=(StdGroup(0.02, (0, 1, 2)),))
    assert breach(policy, Sample(4, "two", 0.05 ** 2, 2, -2.0, ("other",))) is not None   # 2 values suffice
    assert breach(policy, Sample(4, "one", 0.05 ** 2, 1, None, ("other",))) is None
    assert breach(policy, Sample(4, "flat", 0.0, 100, None, ("zero",))) is None
    assert breach(policy, Sample(1, "follower", 0.05 ** 2, 100, 0.0, ("other",))) is None
    assert breach(None, Sample(4, "w", 0.05 ** 2, 100, 0.0, ("other",))) is None
    assert breach(policy_of("scheme", "torch_default"), Sample(4, "w", 0.05 ** 2, 100, 0.0, ("other",))) is None
