"""Matching two models' weights (``trace/match.py``): by name, by place and shape, by value."""
from __future__ import annotations

from initaudit.trace.match import LayerKey, base_name, match_layers


def keys(*specs):
    return [LayerKey(name, "layer", shape, i) for i, (name, shape) in enumerate(specs)]


def test_names_that_agree_match_whatever_their_order():
    a = keys(("conv1.weight", (6, 3, 5, 5)), ("fc.weight", (10, 84)))
    b = keys(("fc.weight", (10, 84)), ("conv1.weight", (6, 3, 5, 5)))
    m = match_layers(a, b)
    assert m.pairs == ((0, 1, "name"), (1, 0, "name")) and not m.only_a and not m.only_b


def test_a_quantizers_suffix_does_not_hide_the_name():
    assert base_name("conv1.weight_quantized") == "conv1.weight" and base_name("onnx::MatMul_7_Q4") == "onnx::MatMul_7"
    assert base_name("fc1.weight_Transposed_quantized") == "fc1.weight"
    a = keys(("fc.weight", (4, 4)), ("fc2.weight", (4, 4)))
    b = keys(("fc2.weight_quantized", (4, 4)), ("fc.weight_quantized", (4, 4)))
    assert match_layers(a, b).pairs == ((0, 1, "name"), (1, 0, "name"))


def test_renamed_tensors_match_by_place_and_shape():
    """An exporter's renaming: onnx::MatMul_93 → val_86, with one layer inserted in B."""
    a = keys(("onnx::MatMul_93", (16, 48)), ("onnx::MatMul_94", (16, 16)), ("onnx::MatMul_95", (16, 32)))
    b = keys(("val_86", (16, 48)), ("adapter", (8, 8)), ("val_87", (16, 16)), ("val_88", (16, 32)))
    m = match_layers(a, b)
    assert m.pairs == ((0, 0, "position"), (1, 2, "position"), (2, 3, "position"))
    assert m.only_b == (1,) and m.only_a == ()


def test_a_name_with_another_shape_is_not_matched_by_name_before_the_shapes_that_fit():
    a = keys(("w", (8, 4)), ("v", (3, 3)))
    b = keys(("x", (8, 4)), ("w", (3, 3)))
    m = match_layers(a, b)
    assert m.pairs == ((0, 0, "position"), (1, 1, "position"))


def test_a_resized_layer_keeps_its_name_match():
    a = keys(("embed.weight", (32000, 512)), ("head.weight", (512, 512)))
    b = keys(("head.weight", (512, 512)), ("embed.weight", (32008, 512)))
    m = match_layers(a, b)
    assert (0, 1, "name") in m.pairs and (1, 0, "name") in m.pairs


def test_values_decide_between_same_shaped_layers_in_another_order():
    """Two same-shaped layers whose order differs between the models: the place pairs them crosswise,
    their values do not correlate so, and the correlation pairs them right."""
    a = keys(("p", (4, 4)), ("q", (4, 4)), ("r", (9, 9)))
    b = keys(("r2", (9, 9)), ("q2", (4, 4)), ("p2", (4, 4)))
    values = {(0, 2): 0.99, (1, 1): 0.98, (2, 0): 0.9}
    m = match_layers(a, b, lambda i, j: values.get((i, j), 0.05))
    assert m.pairs == ((0, 2, "values"), (1, 1, "values"), (2, 0, "values"))


def test_a_positional_pair_that_does_not_correlate_stays_paired_when_nothing_fits_better():
    """A re-initialized layer is still that layer (IA603 judges it), not a removal and an addition."""
    a = keys(("p", (4, 4)), ("r", (9, 9)))
    b = keys(("p2", (4, 4)), ("r2", (9, 9)))
    m = match_layers(a, b, lambda i, j: 0.02)
    assert m.pairs == ((0, 0, "position"), (1, 1, "position"))


def test_swapped_layers_whose_values_do_not_correlate_are_left_unmatched():
    a = keys(("p", (4, 4)), ("r", (9, 9)))
    b = keys(("r2", (9, 9)), ("p2", (4, 4)))
    m = match_layers(a, b, lambda i, j: 0.2)
    assert m.pairs == ((0, 1, "position"),) and m.only_a == (1,) and m.only_b == (0,)
