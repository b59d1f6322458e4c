"""The verdicts of ``initaudit diff`` (``judge/change.py``), thresholds written out as numbers."""
from __future__ import annotations

import pytest

from initaudit.judge.change import Compared, damage_threshold_db, judge_pairs, quantization_damage
from initaudit.measure.compare import Change


def change(sqnr=40.0, rel=0.01, worst=None, identical=False, nonfinite=0):
    return Change(1000, identical, 0.0 if identical else rel, 1.0, None if identical else sqnr, 0.0,
                  None if worst is None else 3, worst, 16 if worst is not None else 0, nonfinite)


def test_damage_thresholds_follow_the_bits_of_the_storage():
    assert damage_threshold_db(8) == pytest.approx(22.16)
    assert damage_threshold_db(11) == pytest.approx(40.22)
    assert damage_threshold_db(4) == 6.0 and damage_threshold_db(2) == 6.0


@pytest.mark.parametrize("sqnr,worst,fails", [(40.0, 38.0, False), (22.3, None, False), (22.0, None, True),
                                              (40.0, 22.0, True), (40.0, 22.3, False), (-9.5, None, True)])
def test_int8_layer_below_22_2_db_whole_or_in_its_worst_unit_is_damaged(sqnr, worst, fails):
    found = quantization_damage(Compared("w", change(sqnr, worst=worst), None, 8))
    assert (found is not None and found.code == "IA601" and found.severity == "fail") == fails


def test_a_4bit_layer_at_15_db_is_healthy_and_at_5_db_damaged():
    assert quantization_damage(Compared("w", change(15.0, worst=8.0), None, 4)) is None
    assert quantization_damage(Compared("w", change(5.0), None, 4)) is not None


def test_a_layer_kept_at_the_same_precision_is_never_quantization_damage():
    assert quantization_damage(Compared("w", change(-3.0), None, None)) is None
    assert quantization_damage(Compared("w", change(-3.0), 8, 8)) is None
    assert quantization_damage(Compared("w", change(-3.0), 4, 8)) is None  # B keeps more bits than A


def test_nonfinite_values_in_a_lowered_layer_are_damage():
    found = quantization_damage(Compared("w", change(60.0, nonfinite=3), None, 11))
    assert found is not None and "3 values are NaN" in found.message


def test_an_identical_layer_among_changed_peers_is_flagged():
    pairs = [Compared(f"l{i}", change(rel=0.03), None, None) for i in range(3)]
    pairs.append(Compared("frozen", change(identical=True), None, None))
    found = judge_pairs(pairs)
    assert [f.code for f in found[3]] == ["IA602"] and not any(found[:3])
    assert "3 of 3 peers changed" in found[3][0].message


def test_an_identical_layer_with_two_peers_or_mostly_identical_peers_is_not_flagged():
    two = [Compared("a", change(rel=0.03), None, None), Compared("b", change(rel=0.03), None, None),
           Compared("c", change(identical=True), None, None)]
    assert judge_pairs(two) == [[], [], []]
    half = [Compared(str(i), change(identical=i % 2 == 0), None, None) for i in range(5)]  # 2 of 4 changed
    assert not any(judge_pairs(half))


def test_layers_a_quantizer_left_in_float_are_peers_of_each_other_only():
    pairs = [Compared(f"q{i}", change(sqnr=40, rel=0.01), None, 8) for i in range(6)]
    pairs += [Compared("float1", change(identical=True), None, None), Compared("float2", change(identical=True), None, None)]
    assert not any(judge_pairs(pairs))


@pytest.mark.parametrize("rel,flagged", [(0.31, True), (0.29, False)])
def test_a_layer_changed_more_than_ten_times_its_peers_median(rel, flagged):
    pairs = [Compared(f"l{i}", change(rel=0.03), None, None) for i in range(4)]
    pairs.append(Compared("reset", change(rel=rel), None, None))
    found = judge_pairs(pairs)[4]
    assert ([f.code for f in found] == ["IA603"]) == flagged


def test_an_outlier_change_needs_three_changed_peers_and_more_than_5_percent():
    two = [Compared(f"l{i}", change(rel=0.001), None, None) for i in range(2)] + [
        Compared("x", change(rel=0.5), None, None)]
    assert not judge_pairs(two)[2]
    three = [Compared(f"l{i}", change(rel=0.001), None, None) for i in range(3)] + [
        Compared("x", change(rel=0.5), None, None)]
    assert [f.code for f in judge_pairs(three)[3]] == ["IA603"]
    small = [Compared(f"l{i}", change(rel=0.001), None, None) for i in range(4)] + [
        Compared("x", change(rel=0.04), None, None)]
    assert not judge_pairs(small)[4]


def test_a_damaged_layer_gets_ia601_not_also_ia603():
    pairs = [Compared(f"l{i}", change(sqnr=40, rel=0.01), None, 8) for i in range(5)]
    pairs.append(Compared("bad", change(sqnr=-9.5, rel=3.0), None, 8))
    assert [f.code for f in judge_pairs(pairs)[5]] == ["IA601"]


def test_a_pair_not_compared_is_judged_by_nothing():
    pairs = [Compared(f"l{i}", change(rel=0.03), None, None) for i in range(4)] + [Compared("x", None, None, 8)]
    assert judge_pairs(pairs)[4] == []
