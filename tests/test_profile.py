"""``--profile auto``'s decision: structure on either side of a layer counts, and half the testable
layers structured is enough (thresholds as literals)."""
from __future__ import annotations

import numpy as np
from test_units import unit_sums_of

from initaudit.judge.profile import decide_profile
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
