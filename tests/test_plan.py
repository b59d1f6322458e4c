"""A weight planned before its values are read (``initaudit/trace/plan.py``): the view each consumer has of
it (the layout written on the stored axes, fans, packed projections split into parts), the structure
findings (IA301 an op it cannot map, IA302 a tensor shared and read two ways, IA303 a reshaped or
reordered weight, IA304 MatMulNBits' scales), what is measured (parts cut from the stored order only,
MatMulNBits decoded, integer units), the pooling and PRelu slope read downstream, and which tensors are
weights at all. Expected values by hand (fan formulas, torch's calculate_gain, Theano's pooled fan_out)
and numpy float64."""
from __future__ import annotations

import math

import numpy as np
import pytest
from modelkit import model, save, tensor, xavier_uniform
from onnx import TensorProto, helper

import initaudit
from initaudit.findings import Finding
from initaudit.trace.fans import Fans

RNG = np.random.default_rng(31)


def audit_layers(tmp_path, m, **options):
    return {layer.name: layer for layer in initaudit.audit(save(m, tmp_path), jobs=1, **options).models[0].layers}


def only_layer(tmp_path, m, name="w", **options):
    return audit_layers(tmp_path, m, **options)[name]


def codes(layer) -> list[str]:
    return [f.code for f in layer.findings]


def test_string_attribute_that_is_not_utf8_does_not_stop_the_audit(tmp_path):
    # a byte string attribute (here one Conv does not use) with invalid UTF-8 is read with replacement
    # characters, not a decoding error; the weight is audited as usual: Conv W[4, 2, 3, 3] has
    # fan_in = 2·9 = 18 and fan_out = 4·9 = 36
    w = RNG.normal(0, 0.1, (4, 2, 3, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", note=b"caf\xe9 \xff")
    layer = only_layer(tmp_path, model([node], [tensor("w", w)]))
    assert (layer.fan_in, layer.fan_out) == (18, 36)


def test_conv_output_split_in_two_is_not_a_packed_projection(tmp_path):
    # a Conv whose 8 output channels are split in two (a GLU conv) is one layer of 8 filters:
    # only MatMul/Gemm/MatMulNBits pack projections. Conv1d W[8, 4, 3]: fans 4·3 = 12 / 8·3 = 24
    w = RNG.normal(0, 0.1, (8, 4, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], name="c"),
             helper.make_node("Split", ["h"], ["a", "b"], axis=1, num_outputs=2)]
    layer = only_layer(tmp_path, model(nodes, [tensor("w", w)], outputs=["a", "b"], opset=18))
    assert layer.parts == ()
    assert (layer.fan_in, layer.fan_out) == (12, 24)
    assert "IA103" not in codes(layer)


def test_a_use_initaudit_cannot_map_is_reported_with_its_reason(tmp_path):
    # Conv W[4, 2, 3, 3] with group=3: 4 filters cannot be shared among 3 groups
    w = RNG.normal(0, 0.1, (4, 2, 3, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", group=3)
    layer = only_layer(tmp_path, model([node], [tensor("w", w)]))
    assert [f for f in layer.findings if f.code == "IA301"] == [Finding(
        "IA301", "warn", "read by Conv in a way initaudit cannot map: Conv weight axis 0 of 4 not divisible by group=3")]
    assert layer.status == "warn"
    assert (layer.op, layer.node, layer.layout) == ("Conv", "c", "")
    assert (layer.groups, layer.scale, layer.fans, layer.fan_in, layer.target) == (1, 1.0, None, None, None)
    assert [(c.node, c.op, c.slot, c.layout, c.fans) for c in layer.consumers] == [("c", "Conv", 1, "", None)]


def test_a_weight_read_by_a_mappable_and_an_unmappable_op_is_judged_by_the_mappable_one(tmp_path):
    # W[6, 4] read first by a Gemm whose alpha is infinite (no finite scale: cannot be mapped), then by
    # a MatMul x @ W (fans 6 / 4): the layer is the MatMul's; both consumers are listed
    w = RNG.normal(0, 0.1, (6, 4)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w"], ["g"], name="gemm", alpha=float("inf")),
             helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    layer = only_layer(tmp_path, model(nodes, [tensor("w", w)], outputs=["g", "y"]))
    assert (layer.op, layer.node, layer.layout, layer.fan_in, layer.fan_out) == ("MatMul", "mm", "IO", 6, 4)
    assert layer.target == "xavier"
    assert [(c.node, c.op, c.slot, c.layout, c.fans) for c in layer.consumers] == [
        ("gemm", "Gemm", 1, "", None), ("mm", "MatMul", 1, "IO", Fans(6, 4))]


def test_an_axis_squeezed_away_shows_as_1_in_the_stored_layout(tmp_path):
    # stored W[1, 6, 4], Squeeze(axis 0) → MatMul x @ W[6, 4]: stored axes 1, I, O
    w = RNG.normal(0, 0.1, (1, 6, 4)).astype(np.float32)
    nodes = [helper.make_node("Squeeze", ["w", "axes"], ["w2"]),
             helper.make_node("MatMul", ["x", "w2"], ["y"], name="mm")]
    layer = only_layer(tmp_path, model(nodes, [tensor("w", w), tensor("axes", np.array([0], np.int64))]))
    assert (layer.layout, layer.fan_in, layer.fan_out) == ("1IO", 6, 4)


def test_an_inserted_unit_axis_is_not_a_merge(tmp_path):
    # stored W[6, 4], Unsqueeze(axis 0) → MatMul reads [1, 6, 4]: no axis merged or split, no IA303
    w = RNG.normal(0, 0.1, (6, 4)).astype(np.float32)
    nodes = [helper.make_node("Unsqueeze", ["w", "axes"], ["w2"]),
             helper.make_node("MatMul", ["x", "w2"], ["y"], name="mm")]
    layer = only_layer(tmp_path, model(nodes, [tensor("w", w), tensor("axes", np.array([0], np.int64))]))
    assert (layer.layout, layer.fan_in, layer.fan_out) == ("IO", 6, 4)
    assert "IA303" not in codes(layer)


def test_a_reshape_that_merges_axes_is_reported(tmp_path):
    # stored W[2, 3, 4] reshaped to [6, 4] for a MatMul: axes 0 and 1 merged into I
    w = RNG.normal(0, 0.1, (2, 3, 4)).astype(np.float32)
    nodes = [helper.make_node("Reshape", ["w", "shape"], ["w2"]),
             helper.make_node("MatMul", ["x", "w2"], ["y"], name="mm")]
    layer = only_layer(tmp_path, model(nodes, [tensor("w", w), tensor("shape", np.array([6, 4], np.int64))]))
    assert (layer.layout, layer.fan_in, layer.fan_out) == ("IO", 6, 4)
    assert [f for f in layer.findings if f.code == "IA303"] == [Finding(
        "IA303", "info", "a Reshape merges or splits axes between the stored [2, 3, 4] and the MatMul's [6, 4]: "
                         "layout shown as the consumer sees it")]


def test_shared_weight_read_with_the_same_layout_but_other_fans(tmp_path):
    # W[4, 6] read by MatMul 'a' as [4, 6] (fans 4/6) and, reshaped, by MatMul 'b' as [6, 4] (fans 6/4):
    # both layouts read "IO", the fans differ
    w = RNG.normal(0, 0.1, (4, 6)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["ya"], name="a"),
             helper.make_node("Reshape", ["w", "shape"], ["w2"]),
             helper.make_node("MatMul", ["x", "w2"], ["yb"], name="b")]
    m = model(nodes, [tensor("w", w), tensor("shape", np.array([6, 4], np.int64))], outputs=["ya", "yb"])
    layer = only_layer(tmp_path, m)
    assert [f for f in layer.findings if f.code == "IA302"] == [Finding(
        "IA302", "warn", "shared by consumers that read it differently: MatMul 'a': IO fans 4/6; MatMul 'b': IO fans 6/4")]


def test_tied_embedding_and_projection(tmp_path):
    # W[10, 4] read by Gather (an embedding table, no fans) and by a MatMul x @ W (fans 10/4)
    w = RNG.normal(0, 0.1, (10, 4)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["w", "ids"], ["e"], name="g"),
             helper.make_node("MatMul", ["x", "w"], ["y"], name="m")]
    m = model(nodes, [tensor("w", w)], inputs=[("x", 1, None), ("ids", TensorProto.INT64, None)], outputs=["e", "y"])
    layer = only_layer(tmp_path, m)
    assert [f for f in layer.findings if f.code == "IA302"] == [Finding(
        "IA302", "warn", "shared by consumers that read it differently: Gather 'g': VD; MatMul 'm': IO fans 10/4")]
    assert [f for f in layer.findings if f.code == "IA901"] == [Finding(
        "IA901", "info", "embedding table read by Gather: not held to a fan-based target")]


def lstm_nodes(weight: str) -> list:
    return [helper.make_node("LSTM", ["x", weight, "r"], ["y"], name="lstm", hidden_size=4)]


def test_gates_of_a_transposed_lstm_weight_are_not_cut_from_the_stored_order(tmp_path):
    # W stored [1, I=3, 4·H=16] and transposed to ONNX's [1, 16, 3]: a gate is not a contiguous run of
    # the stored values, so no per-gate parts; fans per gate: connectivity I / H = 3 / 4
    w = RNG.normal(0, 0.3, (1, 3, 16)).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["w"], ["wt"], perm=[0, 2, 1])] + lstm_nodes("wt")
    r = RNG.normal(0, 0.3, (1, 16, 4)).astype(np.float32)
    layer = only_layer(tmp_path, model(nodes, [tensor("w", w), tensor("r", r)]))
    assert (layer.fan_in, layer.fan_out) == (3, 4)
    assert layer.parts == ()


def test_gates_reordered_by_slices_and_concat_are_not_cut_from_the_stored_order(tmp_path):
    # torch's gate order (i, f, g, o) rebuilt in ONNX's (i, o, f, c) by Concat of four Slices of W[1, 16, 3]
    # (an export without constant folding): the stored rows are permuted, so no per-gate parts
    w = RNG.normal(0, 0.3, (1, 16, 3)).astype(np.float32)
    order = [(0, 4), (12, 16), (4, 8), (8, 12)]
    nodes, inits = [], [tensor("w", w), tensor("ax", np.array([1], np.int64))]
    for i, (start, end) in enumerate(order):
        inits += [tensor(f"s{i}", np.array([start], np.int64)), tensor(f"e{i}", np.array([end], np.int64))]
        nodes.append(helper.make_node("Slice", ["w", f"s{i}", f"e{i}", "ax"], [f"g{i}"]))
    nodes.append(helper.make_node("Concat", [f"g{i}" for i in range(4)], ["wc"], name="cat", axis=1))
    r = RNG.normal(0, 0.3, (1, 16, 4)).astype(np.float32)
    layer = only_layer(tmp_path, model(nodes + lstm_nodes("wc"), inits + [tensor("r", r)]))
    assert (layer.fan_in, layer.fan_out) == (3, 4)
    assert layer.parts == ()
    assert [f for f in layer.findings if f.code == "IA303"] == [Finding(
        "IA303", "info", "Concat 'cat' reorders slices of the weight: per-part statistics unavailable")]


def test_matmul_nbits_that_cannot_be_decoded_is_measured_in_integer_units(tmp_path):
    # zero points computed at run time: the packed 4-bit codes cannot be decoded, so the statistics are
    # those of the stored bytes (integer units) and the layer is held to no target
    codes_ = RNG.integers(0, 16, (8, 2, 16))
    packed = (codes_[..., 0::2] | (codes_[..., 1::2] << 4)).astype(np.uint8)
    node = helper.make_node("MatMulNBits", ["x", "w", "s", "z"], ["y"], name="nb", domain="com.microsoft",
                            N=8, K=32, bits=4, block_size=16)
    m = model([node], [tensor("w", packed), tensor("s", np.full(16, 0.02, np.float32))],
              inputs=[("x", 1, None), ("z", TensorProto.UINT8, None)],
              extra_opsets=[helper.make_opsetid("com.microsoft", 1)])
    layer = only_layer(tmp_path, m)
    assert [f for f in layer.findings if f.code in ("IA304", "IA305")] == [
        Finding("IA304", "warn", "MatMulNBits 'nb': scales or zero points are not constants"),
        Finding("IA305", "info", "integer weights without a scale: statistics in integer units")]
    assert layer.status == "warn" and layer.target is None
    assert layer.stats.mean == pytest.approx(packed.astype(np.float64).mean(), rel=1e-9)


@pytest.mark.parametrize("kernel,pool_area,fan_out", [([2, 2], 4, 1), ([1, 2], 2, 3), (None, 1, 6)])
def test_pool_aware_fan_out(tmp_path, kernel, pool_area, fan_out):
    # Conv W[6, 2, 1, 1]: fan_in 2, fan_out 6; followed by a MaxPool of the given kernel, --pool-aware
    # divides fan_out by the pool's area, rounding down, never below 1 (Theano's LeNet:
    # fan_out = M·k // pool area): 6 // 4 = 1, 6 // 2 = 3
    w = RNG.normal(0, 0.3, (6, 2, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["h" if kernel else "y"], name="c")]
    if kernel:
        nodes.append(helper.make_node("MaxPool", ["h"], ["y"], kernel_shape=kernel, strides=kernel))
    layer = only_layer(tmp_path, model(nodes, [tensor("w", w)]), pool_aware=True)
    assert (layer.fan_in, layer.fan_out, layer.pool_area) == (2, fan_out, pool_area)
    assert type(layer.fan_out) is int


def test_tiny_conv_pooled_keeps_a_fan_out_of_one(tmp_path):
    # Conv W[1, 3, 1, 1] (fan_out 1) before a 2×2 MaxPool: 1 // 4 = 0, kept at 1
    w = RNG.normal(0, 0.3, (1, 3, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], name="c"),
             helper.make_node("MaxPool", ["h"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    layer = only_layer(tmp_path, model(nodes, [tensor("w", w)]), pool_aware=True)
    assert (layer.fan_in, layer.fan_out, layer.pool_area) == (3, 1, 4)


@pytest.mark.parametrize("slope,alpha", [(0.125, 0.125), (None, 0.25)])
def test_prelu_slope_sets_the_auto_target_and_forward_gain(tmp_path, slope, alpha):
    # MatMul W[16, 8] → PRelu: He with torch's calculate_gain("leaky_relu", a) = √(2 / (1 + a²)); a slope
    # computed at run time (a graph input) is taken as PRelu's usual 0.25. forward gain: fan_in·Var·(1 + a²)/2
    w = RNG.normal(0, 0.3, (16, 8)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"), helper.make_node("PRelu", ["h", "a"], ["y"])]
    inits = [tensor("w", w)] + ([tensor("a", np.array(slope, np.float32))] if slope is not None else [])
    inputs = [("x", 1, None)] + ([("a", 1, None)] if slope is None else [])
    layer = only_layer(tmp_path, model(nodes, inits, inputs=inputs), target="auto")
    assert layer.target == "he"
    assert layer.gain == pytest.approx(math.sqrt(2 / (1 + alpha ** 2)), rel=1e-12)
    var = w.astype(np.float64).var()
    assert layer.forward_gain == pytest.approx(16 * var * (1 + alpha ** 2) / 2, rel=1e-6)


def test_integer_weights_without_a_scale_stay_out_of_the_policy_inference(tmp_path):
    # three float layers drawn by Xavier, and a MatMulInteger int8 weight with no scale (integer units,
    # not comparable with any init): the policy is inferred from the three float layers only
    nodes = [helper.make_node("MatMul", ["x", f"w{i}"], [f"y{i}"], name=f"mm{i}") for i in range(3)]
    inits = [tensor(f"w{i}", xavier_uniform(RNG, (64, 48), 64, 48)) for i in range(3)]
    nodes.append(helper.make_node("MatMulInteger", ["xq", "q"], ["yq"], name="mmi"))
    inits.append(tensor("q", RNG.integers(-100, 101, (64, 48)).astype(np.int8)))
    m = model(nodes, inits, inputs=[("x", 1, None), ("xq", TensorProto.UINT8, None)],
              outputs=["y0", "y1", "y2", "yq"])
    report = initaudit.audit(save(m, tmp_path), jobs=1).models[0]
    (q,) = [layer for layer in report.layers if layer.name == "q"]
    assert "IA305" in codes(q)
    policy = report.policy
    assert policy is not None and (policy.kind, policy.scheme, policy.layers) == ("scheme", "xavier", 3)
    assert sorted(policy.follower_names) == ["w0", "w1", "w2"]


def test_a_broken_constant_is_named_by_the_value_the_graph_uses(tmp_path):
    # a Constant node's tensor has its own (here unrelated) name; the user knows the weight as the node's
    # output 'w'. 12 bytes stored for a float [3, 4] tensor, which needs 3·4·4 = 48
    value = TensorProto(name="value_tensor", data_type=TensorProto.FLOAT, raw_data=b"\0" * 12)
    value.dims.extend([3, 4])
    nodes = [helper.make_node("Constant", [], ["w"], value=value), helper.make_node("MatMul", ["x", "w"], ["y"])]
    with pytest.raises(initaudit.InitauditError) as caught:
        initaudit.audit(save(model(nodes, []), tmp_path), jobs=1)
    assert str(caught.value).endswith("tensor 'w' holds 12 bytes, its shape [3, 4] needs 48")


def test_a_layout_that_cannot_be_written_on_the_stored_tensor_shows_as_a_question_mark(tmp_path):
    # a one-value tensor (rank 0) unsqueezed to [1, 1] and read by Gather (a table, no fans) and by a
    # MatMul (fans 1/1): the stored tensor has no axis to write the consumers' letters on
    nodes = [helper.make_node("Unsqueeze", ["w", "axes"], ["w2"]),
             helper.make_node("Gather", ["w2", "ids"], ["e"], name="g"),
             helper.make_node("MatMul", ["x", "w2"], ["y"], name="m")]
    inits = [tensor("w", np.array(0.5, np.float32)), tensor("axes", np.array([0, 1], np.int64))]
    m = model(nodes, inits, inputs=[("x", 1, None), ("ids", TensorProto.INT64, None)], outputs=["e", "y"])
    layer = only_layer(tmp_path, m)
    assert [f for f in layer.findings if f.code == "IA302"] == [Finding(
        "IA302", "warn", "shared by consumers that read it differently: Gather 'g': ?; MatMul 'm': ? fans 1/1")]


def packed(w, outputs):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Split", ["h"], [f"o{i}" for i in range(outputs)], axis=-1, num_outputs=outputs)]
    return model(nodes, [tensor("w", w)], outputs=[f"o{i}" for i in range(outputs)], opset=18)


def test_packed_kv_projection(tmp_path):
    # W[16, 32] split in two along the output axis: k and v, each 16 → 16
    w = RNG.normal(0, 0.2, (16, 32)).astype(np.float32)
    layer = only_layer(tmp_path, packed(w, 2))
    assert [p.name for p in layer.parts] == ["k", "v"]
    assert (layer.fan_in, layer.fan_out) == (16, 16) and type(layer.fan_out) is int
    assert [p.stats.count for p in layer.parts] == [256, 256]
    assert layer.parts[1].stats.var == pytest.approx(np.asarray(w[:, 16:], np.float64).var(), rel=1e-6)
    (note,) = [f for f in layer.findings if f.code == "IA103"]
    # packed Xavier: 2/(16+32); per part: 2/(16+16); the packed one holds (16+16)/(16+32) = 0.67× the per-part
    assert note.message == ("2 parts (k, v) used as separate matrices: fans are those of one part; a Xavier "
                            "init of the packed tensor (fans 16/32) holds 0.67× the per-part Xavier variance")


def test_packed_into_one_unit_each(tmp_path):
    # W[16, 4] split in four: four projections of a single output unit
    w = RNG.normal(0, 0.2, (16, 4)).astype(np.float32)
    layer = only_layer(tmp_path, packed(w, 4))
    assert [p.name for p in layer.parts] == ["part0", "part1", "part2", "part3"]
    assert (layer.fan_in, layer.fan_out) == (16, 1)
    assert [p.stats.count for p in layer.parts] == [16] * 4


MS_OPSET = helper.make_opsetid("com.microsoft", 1)


def nbits_model(codes, scales, zero_input=False, **attrs):
    """MatMulNBits, 4-bit codes two to a byte (low nibble first, onnxruntime's order)."""
    packed = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    inputs = ["x", "w", "s"] + (["z"] if zero_input else [])
    node = helper.make_node("MatMulNBits", inputs, ["y"], name="nb", domain="com.microsoft", **attrs)
    graph_inputs = [("x", 1, None)] + ([("z", 2, None)] if zero_input else [])
    return model([node], [tensor("w", packed), tensor("s", scales)], inputs=graph_inputs, extra_opsets=[MS_OPSET])


def test_matmul_nbits_default_bits_is_four(tmp_path):
    # N = 8 rows, K = 32 in 2 blocks of 16; no zero points: 4-bit codes are centred on 8
    codes = RNG.integers(0, 16, (8, 2, 16))
    scales = RNG.uniform(0.01, 0.05, (8, 2)).astype(np.float32)
    layer = only_layer(tmp_path, nbits_model(codes, scales.ravel(), N=8, K=32, block_size=16))
    values = (codes - 8.0) * scales.astype(np.float64)[:, :, None]
    assert layer.stats.count == 256 and (layer.fan_in, layer.fan_out) == (32, 8)
    assert layer.stats.var == pytest.approx(values.var(), rel=1e-6)
    assert not any(f.code == "IA304" for f in layer.findings)


def test_matmul_nbits_zero_points_computed_at_run_time(tmp_path):
    codes = RNG.integers(0, 16, (8, 2, 16))
    scales = np.full(16, 0.02, np.float32)
    layer = only_layer(tmp_path, nbits_model(codes, scales, zero_input=True, N=8, K=32, bits=4, block_size=16))
    assert [f.message for f in layer.findings if f.code == "IA304"] == \
        ["MatMulNBits 'nb': scales or zero points are not constants"]


def test_unsupported_op_reads_a_constant_node(tmp_path):
    w = RNG.normal(0, 0.1, (6, 5)).astype(np.float32)
    nodes = [helper.make_node("Constant", [], ["w"], value=tensor("w", w)),
             helper.make_node("Mystery", ["x", "w"], ["y"], domain="custom")]
    m = model(nodes, [], extra_opsets=[helper.make_opsetid("custom", 1)])
    layer = only_layer(tmp_path, m)
    assert layer.op == "custom.Mystery" and layer.storage == "constant"
    assert [f.message for f in layer.findings if f.code == "IA301"] == \
        ["read by custom.Mystery, an op whose weight layout is unknown"]


def test_only_float_and_quantized_matrices_are_weight_candidates(tmp_path):
    nodes = [helper.make_node("Mystery", ["x", "ids", "q"], ["y"], domain="custom")]
    inits = [tensor("ids", np.arange(12, dtype=np.int64).reshape(3, 4)),
             tensor("q", np.arange(12, dtype=np.int8).reshape(3, 4))]
    m = model(nodes, inits, extra_opsets=[helper.make_opsetid("custom", 1)])
    names = [layer.name for layer in initaudit.audit(save(m, tmp_path)).models[0].layers]
    assert names == ["q"]


CUSTOM = helper.make_opsetid("custom", 1)


def test_empty_prelu_slope_reads_as_the_default_slope(tmp_path):
    # no slope value: PRelu's usual 0.25 (torch's init), He gain sqrt(2 / (1 + 0.25²)); forward gain
    # fan_in · var / gain²
    w = RNG.normal(0, 0.1, (24, 10)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("PRelu", ["h", "s"], ["y"])]
    layer = only_layer(tmp_path, model(nodes, [tensor("w", w), tensor("s", np.zeros(0, np.float32))]), target="auto")
    gain = math.sqrt(2 / (1 + 0.25 ** 2))
    assert layer.target == "he" and layer.gain == pytest.approx(gain, rel=1e-12)
    assert layer.forward_gain == pytest.approx(24 * w.astype(np.float64).var() / gain ** 2, rel=1e-9)


def test_matmul_nbits_with_scales_that_do_not_fit(tmp_path):
    # N = 8, K = 32, blocks of 16: 8×2 scales expected, 15 given. The packed bytes are measured as stored
    codes = RNG.integers(0, 16, (8, 2, 16))
    packed = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    node = helper.make_node("MatMulNBits", ["x", "w", "s"], ["y"], name="nb", domain="com.microsoft",
                            N=8, K=32, bits=4, block_size=16)
    m = model([node], [tensor("w", packed), tensor("s", np.full(15, 0.02, np.float32))], extra_opsets=[MS_OPSET])
    layer = only_layer(tmp_path, m)
    assert [f.message for f in layer.findings if f.code == "IA304"] == \
        ["MatMulNBits 'nb': scales of size 15, expected 8×2"]
    assert layer.stats.count == 128 and layer.stats.var == pytest.approx(packed.astype(np.float64).var(), rel=1e-9)


def test_unsupported_op_error_names_the_constant_as_the_graph_does(tmp_path):
    # Constant "w" whose value tensor (named "v") holds 116 bytes for 6×5 float32 (120)
    value = tensor("v", np.zeros((6, 5), np.float32))
    value.raw_data = value.raw_data[:-4]
    nodes = [helper.make_node("Constant", [], ["w"], value=value),
             helper.make_node("Mystery", ["x", "w"], ["y"], domain="custom")]
    with pytest.raises(initaudit.InitauditError, match=r"^tensor 'w' holds 116 bytes, its shape \[6, 5\] needs 120$"):
        initaudit.audit(save(model(nodes, [], extra_opsets=[CUSTOM]), tmp_path), jobs=1)


def test_reshape_that_merges_axes_is_reported(tmp_path):
    w = xavier_uniform(RNG, (4, 16, 32), 64, 32)
    m = model([helper.make_node("Reshape", ["w", "s"], ["w2"]),
               helper.make_node("MatMul", ["x", "w2"], ["y"])],
              [tensor("w", w), tensor("s", np.array([64, 32], np.int64))])
    layer = only_layer(tmp_path, m)
    assert (layer.fan_in, layer.fan_out) == (64, 32)
    assert any(f.code == "IA303" for f in layer.findings) and layer.layout == "IO"


def test_shared_weight_one_entry(tmp_path):
    w = xavier_uniform(RNG, (32, 16), 32, 16)
    m = model([helper.make_node("MatMul", ["x", "w"], ["a"], name="first"),
               helper.make_node("MatMul", ["a2", "w"], ["y"], name="second")], [tensor("w", w)])
    found = audit_layers(tmp_path, m)
    assert list(found) == ["w"] and [c.node for c in found["w"].consumers] == ["first", "second"]
    assert not any(f.code == "IA302" for f in found["w"].findings)


def test_tied_embedding_conflict(tmp_path):
    table = RNG.normal(0, 0.05, (100, 16)).astype(np.float32)
    m = model([helper.make_node("Gather", ["table", "ids"], ["e"], name="embed"),
               helper.make_node("Gemm", ["h", "table"], ["y"], transB=1, name="lm_head")], [tensor("table", table)])
    layer = only_layer(tmp_path, m, "table")
    assert len(layer.consumers) == 2 and any(f.code == "IA302" for f in layer.findings)


def test_unsupported_consumer_is_listed_not_dropped(tmp_path):
    w = RNG.normal(0, 0.1, (64, 3, 3, 3)).astype(np.float32)
    bias_table = RNG.normal(0, 0.1, (16, 16)).astype(np.float32)
    m = model([helper.make_node("FancyConv", ["x", "w"], ["h"], domain="vendor"),
               helper.make_node("Add", ["h", "pos"], ["y"])], [tensor("w", w), tensor("pos", bias_table)],
              extra_opsets=[helper.make_opsetid("vendor", 1)])
    report = initaudit.audit(save(m, tmp_path)).models[0]
    (layer,) = report.layers
    assert layer.name == "w" and layer.op == "vendor.FancyConv" and layer.findings[0].code == "IA301"
    assert layer.status == "warn" and layer.stats.count == w.size
    assert [(s.name, s.op) for s in report.skipped] == [("pos", "Add")]


# === weights the file does not hold, and weights computed from constants ===============================


def test_an_unstored_weight_without_a_declared_shape_has_no_layout_and_no_ia301(tmp_path):
    m = model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], [],
              inputs=[("x", TensorProto.FLOAT, None), ("w", TensorProto.FLOAT, None)])
    layer = only_layer(tmp_path, m)
    assert codes(layer) == ["IA002"] and layer.status == "fail"
    assert (layer.shape, layer.layout, layer.fans, layer.fan_in, layer.dtype) == ((), "", None, None, "float")
    assert layer.findings[0].message == (
        "weights not stored in the file — exported without parameters (export_params=False)? graph input 'w' "
        "(no static shape declared) is read as the weight of Conv 'conv'")


def test_an_unstored_weight_behind_a_transpose_has_the_layout_of_its_declared_shape(tmp_path):
    m = model([helper.make_node("Transpose", ["k"], ["kt"], perm=[3, 2, 0, 1]),
               helper.make_node("Conv", ["x", "kt"], ["y"])], [],
              inputs=[("x", TensorProto.FLOAT, None), ("k", TensorProto.FLOAT16, [5, 5, 3, 6])])
    layer = only_layer(tmp_path, m, "k")
    assert (layer.layout, layer.fan_in, layer.fan_out, layer.dtype) == ("HWIO", 75, 150, "float16")
    assert layer.target is None and layer.ratio is None and layer.stats.count == 0 and codes(layer) == ["IA002"]


def test_unstored_weights_are_listed_after_the_stored_ones_and_not_reviewed(tmp_path):
    w = xavier_uniform(RNG, (8, 4, 3, 3), 36, 72)
    m = model([helper.make_node("Conv", ["x", "g"], ["h"]), helper.make_node("Conv", ["h", "w"], ["y"])],
              [tensor("w", w)], inputs=[("x", TensorProto.FLOAT, None), ("g", TensorProto.FLOAT, [4, 3, 3, 3])])
    found = initaudit.audit(save(m, tmp_path), jobs=1, profile="trained", fp16=True).models[0].layers
    assert [(layer.name, layer.storage) for layer in found] == [("w", "inline"), ("g", "graph_input")]
    assert found[1].review is None and codes(found[1]) == ["IA002"]


def test_constants_a_computed_weight_is_made_of_are_not_skipped(tmp_path):
    """Tile(part) feeds a Conv: part is measured as the tiled weight; an unrelated matrix an Add reads is skipped."""
    part = xavier_uniform(RNG, (2, 4, 3, 3), 36, 72)
    m = model([helper.make_node("Tile", ["part", "reps"], ["w"]), helper.make_node("Conv", ["x", "w"], ["h"]),
               helper.make_node("Add", ["h", "other"], ["y"])],
              [tensor("part", part), tensor("reps", np.array([4, 1, 1, 1])),
               tensor("other", RNG.normal(0, 1, (8, 6)).astype(np.float32))])
    report = initaudit.audit(save(m, tmp_path), jobs=1).models[0]
    (layer,) = report.layers
    assert (layer.name, layer.storage, layer.shape, layer.stats.count) == ("w", "computed", (8, 4, 3, 3), 288)
    assert layer.stats.var == pytest.approx(float(np.tile(part, (4, 1, 1, 1)).astype(np.float64).var()), rel=1e-9)
    assert [s.name for s in report.skipped] == ["other"]
