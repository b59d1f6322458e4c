"""``--profile auto``'s decision: structure on either side of a layer counts, and half the testable
layers structured is enough (thresholds as literals)."""
from __future__ import annotations

import numpy as np
from test_units import unit_sums_of

from initaudit.judge.profile import decide_profile, looks_trained
from initaudit.measure.stats import stats_of


def _fresh(rng):
    return rng.normal(0.0, 0.02, (64, 64, 3, 3))


def _inputs_structured(rng):
    """i.i.d. output units, input channels at alternating scales 1 and 1.5."""
    return _fresh(rng) * np.tile([1.0, 1.5], 32).reshape(1, -1, 1, 1)


def _outputs_structured(rng):
    return _fresh(rng) * rng.lognormal(0.0, 0.5, (64, 1, 1, 1))


def _decide(weights):
    return decide_profile([unit_sums_of(w, "OIHW") for w in weights], [stats_of(w) for w in weights])


def test_structure_on_the_input_units_alone_makes_a_model_trained():
    rng = np.random.default_rng(0)
    profile, reason = _decide([_inputs_structured(rng) for _ in range(4)])
    assert profile == "trained" and "4 of 4 testable layers" in reason


def test_exactly_half_the_layers_structured_is_trained_and_fewer_is_init():
    rng = np.random.default_rng(1)
    half = [_outputs_structured(rng) for _ in range(3)] + [_fresh(rng) for _ in range(3)]
    assert _decide(half)[0] == "trained"
    fewer = [_outputs_structured(rng) for _ in range(2)] + [_fresh(rng) for _ in range(3)]
    profile, reason = _decide(fewer)
    assert profile == "init" and "2 of 5" in reason


def test_fresh_layers_make_an_init_model():
    rng = np.random.default_rng(2)
    assert _decide([_fresh(rng) for _ in range(6)])[0] == "init"


def _decide_layers(*pairs):
    """decide_profile over (weight, layout) pairs; a None weight is a layer the unit pass did not review."""
    sums = [None if w is None else unit_sums_of(w, layout) for w, layout in pairs]
    stats = [stats_of(np.zeros(1) if w is None else w) for w, _ in pairs]
    return decide_profile(sums, stats)


TEST_WORDS = "(unit-norm dispersion |z| > 5, or values that fit no init family)"


def test_a_layer_of_exactly_4_units_and_256_values_is_tested():
    """AUTO_MIN_UNITS = 4 and AUTO_MIN_VALUES = 256 are inclusive: a 4 × 64 Laplace layer (no init family)
    is tested, and structured."""
    w = np.random.default_rng(3).laplace(0.0, 0.02, (4, 64))
    assert _decide_layers((w, "OI")) == ("trained", f"auto: trained, 1 of 1 testable layers show structure {TEST_WORDS}")


def test_layers_too_small_or_too_few_units_or_constant_are_not_tested():
    """Each gate alone keeps a layer out: fewer than 256 values (8 units of 16), fewer than 4 units (2 of
    1024), no spread (a constant 16 × 16), no unit sums (None); none is tested, whatever its values."""
    rng = np.random.default_rng(4)
    untested = ("init", "auto: init, no layer large enough to test for structure")
    assert _decide_layers((rng.laplace(0.0, 0.02, (8, 16)), "OI")) == untested
    assert _decide_layers((rng.laplace(0.0, 0.02, (2, 1024)), "OI")) == untested
    assert _decide_layers((np.full((16, 16), 0.5), "OI")) == untested
    assert _decide_layers((None, "OI")) == untested


def test_an_untested_layer_does_not_stop_the_count():
    rng = np.random.default_rng(5)
    small = rng.laplace(0.0, 0.02, (8, 16))
    heavy = [(rng.laplace(0.0, 0.02, (64, 64)), "OI") for _ in range(2)]
    assert _decide_layers((None, "OI"), (small, "OI"), *heavy) == (
        "trained", f"auto: trained, 2 of 2 testable layers show structure {TEST_WORDS}")


def test_values_of_no_init_family_are_structure_without_any_unit_spread():
    """i.i.d. Laplace values: every unit norm as a fresh draw's (|z| < 5 on both sides), but no init family."""
    w = np.random.default_rng(6).laplace(0.0, 0.02, (64, 64))
    assert decide_profile([unit_sums_of(w, "OI")], [stats_of(w)])[0] == "trained"


def _normal_with_scaled_inputs(rng, inputs):
    """Normal values whose input channels alternate between std 1 and 1.1 (× 0.02): the values still fit
    the normal family (excess kurtosis ≈ 0.03), the input units' norms spread far beyond a fresh draw's."""
    return rng.normal(0.0, 0.02, (64, inputs, 16, 16)) * np.resize([1.0, 1.1], inputs).reshape(1, -1, 1, 1)


def test_structure_on_four_input_units_alone_counts():
    """AUTO_MIN_UNITS holds on the input side too, inclusive: 4 input channels are tested."""
    w = _normal_with_scaled_inputs(np.random.default_rng(7), 4)
    assert decide_profile([unit_sums_of(w, "OIHW")], [stats_of(w)]) == (
        "trained", f"auto: trained, 1 of 1 testable layers show structure {TEST_WORDS}")


def test_input_units_fewer_than_4_are_not_tested():
    """Two input channels: their dispersion is not asked (too few units), and the output units and the
    values look fresh, so the layer shows no structure."""
    w = _normal_with_scaled_inputs(np.random.default_rng(8), 2)
    assert decide_profile([unit_sums_of(w, "OIHW")], [stats_of(w)])[0] == "init"


def test_looks_trained_counts_layers_from_256_values_with_spread():
    """The hint counts layers of at least 256 values (inclusive) and a positive variance, and speaks from
    half of them on."""
    rng = np.random.default_rng(9)

    def hint(other, of):
        return (f"{other} of {of} layers hold values that fit no init family (uniform, normal, truncated normal): "
                "the model looks trained; review it with --profile trained (or auto)")

    heavy = stats_of(rng.laplace(0.0, 0.02, (64, 64)))
    normal = [stats_of(rng.normal(0.0, 0.02, (64, 64))) for _ in range(3)]
    assert looks_trained([stats_of(rng.laplace(0.0, 0.02, (4, 64)))]) == hint(1, 1)
    small_uniform = [stats_of(rng.uniform(-0.02, 0.02, (10, 10))) for _ in range(2)]
    assert looks_trained([heavy, *small_uniform]) == hint(1, 1)
    assert looks_trained([heavy, stats_of(np.full((16, 16), 0.5))]) == hint(1, 1)
    assert looks_trained([heavy, normal[0]]) == hint(1, 2)
    assert looks_trained([heavy, *normal]) is None
