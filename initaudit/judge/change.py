"""The verdicts of ``initaudit diff``: pure functions of each pair's figures (``measure.compare.Change``)
and of its peers' (IA601–IA603), so a planted problem is judged the same on any pair of models."""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from initaudit.findings import Finding, finding
from initaudit.measure.compare import Change

#: IA601: the SQNR a storage of ``bits`` keeps is about 6.02·bits dB plus a few dB for the value
#: distribution; a damaged layer is this far below it (int8: 22.2 dB, float16: 40.2 dB)...
DAMAGE_MARGIN_DB = 26.0
#: ...and never judged against less than this (4-bit blocks keep about 20 dB).
DAMAGE_FLOOR_DB = 6.0
#: IA602: an identical layer is flagged among at least this many compared peers, most of which changed.
UNCHANGED_MIN_PEERS = 3
#: IA603: a layer changed more than this many times the median of its changed peers (at least
#: OUTLIER_MIN_PEERS of them), and by more than OUTLIER_MIN_CHANGE, changed far more than they did.
OUTLIER_FACTOR = 10.0
OUTLIER_MIN_PEERS = 3
OUTLIER_MIN_CHANGE = 0.05


@dataclass(frozen=True)
class Compared:
    """One matched pair as the judge sees it."""

    label: str                 # how the findings name it ("fc1.weight → fc1.weight_quantized")
    change: Change | None      # None: not compared (its IA606 reason is already a finding)
    bits_a: int | None         # effective bits of each side's storage (None: full float32 or wider)
    bits_b: int | None

    @property
    def lowered(self) -> bool:
        """B keeps fewer bits than A: a quantization (or a cast down) of this layer."""
        return self.bits_b is not None and (self.bits_a is None or self.bits_b < self.bits_a)

    @property
    def peer_group(self) -> tuple[int | None, int | None]:
        return self.bits_a, self.bits_b


def damage_threshold_db(bits: int) -> float:
    return max(DAMAGE_FLOOR_DB, 6.02 * bits - DAMAGE_MARGIN_DB)


def quantization_damage(pair: Compared) -> Finding | None:
    """IA601: a lowered layer whose SQNR, whole or of its worst output unit, is below what its bits keep."""
    change = pair.change
    if change is None or not pair.lowered or change.identical or pair.bits_b is None:
        return None
    limit = damage_threshold_db(pair.bits_b)
    if change.nonfinite:
        return finding("IA601", f"{pair.label}: {change.nonfinite} values are NaN or ±Inf on one side and not on "
                                f"the other ({pair.bits_b}-bit storage)")
    whole, worst = change.sqnr_db, change.worst_unit_sqnr_db
    if whole is not None and whole < limit:
        return finding("IA601", f"{pair.label}: SQNR {_db(whole)} against A, below the {limit:.1f} dB "
                                f"{pair.bits_b}-bit storage keeps (relative change {_pct(change.rel_change)})")
    if worst is not None and worst < limit:
        return finding("IA601", f"{pair.label}: output unit {change.worst_unit} of {change.units} at SQNR "
                                f"{_db(worst)}, below the {limit:.1f} dB {pair.bits_b}-bit storage keeps "
                                f"(the whole layer: {_db(whole)})")
    return None


def judge_pairs(pairs: Sequence[Compared]) -> list[list[Finding]]:
    """The findings of each pair: IA601 on its own figures, IA602 and IA603 against its peers (the pairs
    stored at the same precisions on both sides)."""
    found: list[list[Finding]] = [[] for _ in pairs]
    for i, pair in enumerate(pairs):
        damage = quantization_damage(pair)
        if damage is not None:
            found[i].append(damage)
    groups: dict[tuple[int | None, int | None], list[int]] = {}
    for i, pair in enumerate(pairs):
        if pair.change is not None:
            groups.setdefault(pair.peer_group, []).append(i)
    for members in groups.values():
        for i in members:
            peers = [pairs[j].change for j in members if j != i]
            extra = _against_peers(pairs[i], [p for p in peers if p is not None], bool(found[i]))
            if extra is not None:
                found[i].append(extra)
    return found


def _against_peers(pair: Compared, peers: list[Change], damaged: bool) -> Finding | None:
    change = pair.change
    assert change is not None
    changed = [p.rel_change for p in peers if not p.identical and p.rel_change is not None]
    if change.identical:
        if len(peers) >= UNCHANGED_MIN_PEERS and 2 * len(changed) > len(peers):
            return finding("IA602", f"{pair.label}: identical in both models, while {len(changed)} of "
                                    f"{len(peers)} peers changed (median relative change "
                                    f"{_pct(statistics.median(changed))})")
        return None
    if damaged or change.rel_change is None or len(changed) < OUTLIER_MIN_PEERS:
        return None
    median = statistics.median(changed)
    if change.rel_change > OUTLIER_MIN_CHANGE and change.rel_change > OUTLIER_FACTOR * median:
        times = "∞" if median == 0 else f"{change.rel_change / median:.0f}×"
        return finding("IA603", f"{pair.label}: relative change {_pct(change.rel_change)}, {times} the median "
                                f"of {len(changed)} peers that changed ({_pct(median)})")
    return None


def _db(value: float | None) -> str:
    if value is None:
        return "∞ dB"
    return "-∞ dB" if math.isinf(value) else f"{value:.1f} dB"


def _pct(value: float | None) -> str:
    return "∞" if value is None else f"{100 * value:.3g} %"
