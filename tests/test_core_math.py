"""Fan rules and moment merging, pinned by values worked out by hand or by numpy in float64.

Written against mutation testing (docs/mutation.md): each assertion here failed for at least one
mutant that the rest of the suite let through.
"""
from __future__ import annotations

import pytest

from initaudit.trace.fans import Fans, keras_fans, layout_fans, torch_fans


def test_keras_fans_every_rank():
    # keras.initializers.compute_fans: () → (1, 1); (n,) → (n, n); (..., in, out) → in·rf, out·rf
    assert keras_fans([]) == Fans(1, 1)
    assert keras_fans([7]) == Fans(7, 7)
    assert keras_fans([3, 4, 5]) == Fans(4 * 3, 5 * 3)
    assert keras_fans([2, 3, 4, 5]) == Fans(4 * 6, 5 * 6)


def test_torch_fans_every_rank():
    # torch _calculate_fan_in_and_fan_out: dim 1 in, dim 0 out, the rest receptive field
    assert torch_fans([5, 3]) == Fans(3, 5)
    assert torch_fans([6, 2, 4]) == Fans(2 * 4, 6 * 4)
    with pytest.raises(ValueError, match="at least 2"):
        torch_fans([4])


def test_layout_fans_groups_divide_the_right_axis():
    assert layout_fans([8, 6], "IO") == Fans(8, 6)                 # groups default to 1
    assert layout_fans([8, 6], "IO", groups=2) == Fans(8, 3)       # a 2-letter layout is never transposed: O
    assert layout_fans([8, 6, 3], "IOW", groups=2) == Fans(4 * 3, 6 * 3)  # ConvTranspose: I holds all C
    assert layout_fans([8, 6, 3], "OIW", groups=2) == Fans(6 * 3, 4 * 3)
    assert layout_fans([2, 8, 6], "BIO") == Fans(8, 6)             # B is neither fan nor field
    assert layout_fans([3, 3, 4, 8], "hwio") == Fans(4 * 9, 8 * 9)  # letters in any case


@pytest.mark.parametrize("shape,layout,groups,message", [
    ([7, 2, 3], "OIW", 2, "O axis of size 7 is not divisible by groups=2"),
    ([7, 2, 3], "IOW", 2, "I axis of size 7 is not divisible by groups=2"),
    ([4, 4], "OO", 1, "exactly one 'I'"),
    ([4, 4], "IB", 1, "exactly one 'O'"),
    ([4, 4, 4], "IO", 1, "has 2 axes but the shape [4, 4, 4] has 3"),
    ([4, 4], "IO", 0, "groups must be a positive integer, got 0"),
])
def test_layout_fans_errors(shape, layout, groups, message):
    with pytest.raises(ValueError) as info:
        layout_fans(shape, layout, groups)
    assert message in str(info.value)


def test_spatial_letters():
    from initaudit.trace.fans import spatial_letters

    assert [spatial_letters(r) for r in range(6)] == ["", "W", "HW", "DHW", "SSSS", "SSSSS"]


def test_conv_fans_are_integers_and_keras_depthwise_from_two_groups():
    from initaudit.trace.fans import conv_fans, conv_transpose_fans

    # depthwise with 2 groups (C = 2, one channel per group, M = 4): Keras' kernel [3, 3, 2, 2]
    assert conv_fans([4, 1, 3, 3], 2)["keras"] == Fans(2 * 9, 2 * 9)
    assert conv_fans([4, 1, 3, 3], 1)["keras"] == Fans(9, 4 * 9)  # not depthwise: as torch
    every = [*conv_fans([6, 2, 3, 3], 3).values(), *conv_transpose_fans([6, 2, 3], 3).values(),
             *conv_fans([4, 1, 3, 3], 2).values(), layout_fans([6, 4, 3], "IOW", 2), layout_fans([6, 4, 3], "OIW", 2)]
    # fans are counts: the JSON report writes 9, never 9.0
    assert all(type(f.fan_in) is int and type(f.fan_out) is int for f in every)


def test_any_other_letter_is_a_receptive_field_axis():
    assert layout_fans([2, 3, 5], "IOX") == Fans(2 * 5, 3 * 5)
    assert layout_fans([2, 3, 5, 7], "QIOZ") == Fans(3 * 14, 5 * 14)
