"""Which profile a model is judged by: ``--profile auto`` decides init or trained from the structure a
fresh draw cannot have; an init run notes when the model looks trained."""
from __future__ import annotations

from collections.abc import Sequence

from initaudit.judge.review import dispersion
from initaudit.judge.verdict import distribution
from initaudit.measure.stats import TensorStats
from initaudit.measure.units import UnitSums

#: ``--profile auto`` calls a model trained when at least this share of its testable layers shows structure.
AUTO_TRAINED_SHARE = 0.5
#: Layers smaller than this (values, output units) are not tested for structure.
AUTO_MIN_VALUES = 256
AUTO_MIN_UNITS = 4
#: |z| of the unit-norm dispersion beyond which a layer shows structure (a fresh layer: p < 1e-6).
Z_STRUCTURE = 5.0


def decide_profile(sums: Sequence[UnitSums | None], stats: Sequence[TensorStats]) -> tuple[str, str]:
    """``--profile auto``: trained when most testable layers show structure a fresh draw cannot have.

    A layer of at least AUTO_MIN_VALUES values and AUTO_MIN_UNITS units shows structure when the
    norms of its output or input units spread far more, or far less, than an i.i.d. draw allows
    (|z| > Z_STRUCTURE), or when its values fit no init family (heavy tails, skew).
    """
    tested = structured = 0
    for s, st in zip(sums, stats):
        if s is None or s.units < AUTO_MIN_UNITS or s.count < AUTO_MIN_VALUES or not st.var > 0:
            continue
        tested += 1
        zs = [d.z for d in (dispersion(s), dispersion(s, "in") if s.in_units >= AUTO_MIN_UNITS else None) if d]
        structured += any(abs(z) > Z_STRUCTURE for z in zs) or distribution(st) == "other"
    test = f"(unit-norm dispersion |z| > {Z_STRUCTURE:g}, or values that fit no init family)"
    if tested and structured >= AUTO_TRAINED_SHARE * tested:
        return "trained", f"auto: trained, {structured} of {tested} testable layers show structure {test}"
    if not tested:
        return "init", "auto: init, no layer large enough to test for structure"
    return "init", (f"auto: init, {structured} of {tested} testable layers show structure {test}, "
                    f"fewer than {AUTO_TRAINED_SHARE:.0%}")


def looks_trained(stats: Sequence[TensorStats]) -> str | None:
    """For an init run (no unit pass): a hint when most layers' values fit no init family."""
    sized = [st for st in stats if st.count >= AUTO_MIN_VALUES and st.var > 0]
    other = sum(distribution(st) == "other" for st in sized)
    if sized and other >= AUTO_TRAINED_SHARE * len(sized):
        return (f"{other} of {len(sized)} layers hold values that fit no init family (uniform, normal, "
                f"truncated normal): the model looks trained; review it with --profile trained (or auto)")
    return None
