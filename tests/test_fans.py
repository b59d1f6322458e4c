"""Fan vectors (``initaudit/trace/fans.py``): the rows of reference §10 for every convention, and each fan
rule (Keras, torch, a layout's letters) at every rank, with the values worked out by hand."""
from __future__ import annotations

import pytest

from initaudit.trace.fans import Fans, keras_fans, layout_fans, torch_fans
from initaudit.trace.ops import OpUse, role_of


def role_fans(op, shape, slot=1, **attrs):
    role = role_of(OpUse(op, "", slot, tuple(shape), attrs))
    return {k: (v.fan_in, v.fan_out) for k, v in role.fans.items()}


# (op, shape, attrs, slot, connectivity, pytorch, keras) — rows of reference §10
ROWS = [
    pytest.param("Conv", (6, 3, 5, 5), {}, 1, (75, 150), (75, 150), (75, 150), id="3-conv-lenet"),
    pytest.param("Conv", (32, 1, 3, 3), {"group": 32}, 1, (9, 9), (9, 288), (288, 9), id="4-depthwise"),
    pytest.param("Conv", (64, 16, 3, 3), {"group": 4}, 1, (144, 144), (144, 576), (144, 576), id="5-grouped"),
    pytest.param("ConvTranspose", (16, 8, 4, 4), {}, 1, (256, 128), (128, 256), (128, 256), id="6-convtranspose"),
    pytest.param("Conv", (8, 4, 3), {}, 1, (12, 24), (12, 24), (12, 24), id="7-conv1d"),
    pytest.param("Conv", (8, 4, 3, 3, 3), {}, 1, (108, 216), (108, 216), (108, 216), id="8-conv3d"),
    pytest.param("Gemm", (120, 400), {"transB": 1}, 1, (400, 120), (400, 120), (400, 120), id="9-gemm-transB"),
    pytest.param("MatMul", (400, 120), {}, 1, (400, 120), (400, 120), (400, 120), id="10-matmul-B"),
    pytest.param("LSTM", (1, 80, 10), {"hidden_size": 20}, 1, (10, 20), (10, 80), (10, 80), id="11-lstm-W"),
    pytest.param("LSTM", (1, 80, 20), {"hidden_size": 20}, 2, (20, 20), (20, 80), (20, 80), id="11-lstm-R"),
    pytest.param("Einsum", (512, 8, 64), {"equation": "btd,dnh->btnh"}, 1, (512, 512), (512, 512), (512, 512),
                 id="13-einsum-mha-query"),
]


@pytest.mark.parametrize("op,shape,attrs,slot,conn,torch,keras", ROWS)
def test_reference_vectors(op, shape, attrs, slot, conn, torch, keras):
    assert role_fans(op, shape, slot, **attrs) == {"connectivity": conn, "pytorch": torch, "keras": keras}


def test_row1_and_row2_literal_framework_rules():
    # Row 1: the SO filter [5,5,3,6] (w,h,in,out) — Keras reads it right, torch only on its own layout.
    assert keras_fans([5, 5, 3, 6]) == Fans(75, 150)
    assert torch_fans([5, 5, 3, 6]) == Fans(90, 90)
    assert torch_fans([6, 3, 5, 5]) == Fans(75, 150)
    # Row 2: FC [400,120] (in,out).
    assert keras_fans([400, 120]) == Fans(400, 120)
    assert torch_fans([400, 120]) == Fans(120, 400)
    assert torch_fans([120, 400]) == Fans(400, 120)


@pytest.mark.parametrize("shape,layout,groups,expected", [
    ((5, 5, 3, 6), "HWIO", 1, (75, 150)),
    ((400, 120), "IO", 1, (400, 120)),
    ((120, 400), "OI", 1, (400, 120)),
    ((6, 3, 5, 5), "OIHW", 1, (75, 150)),
    ((32, 1, 3, 3), "OIHW", 32, (9, 9)),
    ((64, 16, 3, 3), "OIHW", 4, (144, 144)),
    ((16, 8, 4, 4), "IOHW", 1, (256, 128)),
    ((16, 8, 4, 4), "IOHW", 2, (128, 128)),
    ((8, 4, 3, 3, 3), "OIDHW", 1, (108, 216)),
    ((3, 3, 16, 64), "HWIO", 4, (144, 144)),
    ((4, 400, 120), "BIO", 1, (400, 120)),
])
def test_layout_calculator(shape, layout, groups, expected):
    assert layout_fans(shape, layout, groups).as_list() == list(expected)


@pytest.mark.parametrize("shape,layout,groups,message", [
    ((5, 5, 3), "HWIO", 1, "has 4 axes"),
    ((5, 5), "HW", 1, "exactly one 'I'"),
    ((6, 3, 5, 5), "OIHW", 4, "not divisible"),
    ((6, 3), "OI", 0, "positive"),
])
def test_layout_calculator_rejects(shape, layout, groups, message):
    with pytest.raises(ValueError, match=message):
        layout_fans(shape, layout, groups)


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
