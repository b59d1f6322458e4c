#!/usr/bin/env python3
"""Regenerate tests/fixtures/unfolded/: exports whose shapes are computed at run time.

* Some of ``make_torch_fixtures.py``'s models, with the same seeds and inits (so
  ``tests/fixtures/torch/expected.json`` holds their torch fans), exported by the
  TorchScript exporter with ``do_constant_folding=False``: Reshape targets, Slice
  bounds and gate reorderings then come from small Constant / Shape / Gather /
  Unsqueeze / Concat cones instead of folded initializers.
* ``keras_depthwise.onnx``: the graph Keras 3 (torch backend) writes for a
  DepthwiseConv2D, built with onnx.helper: the kernel is stored ``[kh, kw, C, mult]``
  and reaches a ``group=C`` Conv through a Reshape whose target shape is a Concat
  of Unsqueezed Constants and of a Gather of the kernel's own Shape, then a
  Transpose.  ``keras_depthwise.folded.onnx`` is the same layer with the target
  folded into an initializer, the reference the unfolded one must equal.

    PYTHONPATH=$PWD /work/torchenv/bin/python scripts/make_unfolded_fixtures.py
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "unfolded"
UNFOLDED = ["lenet_default", "separable_xavier", "recurrent_xavier", "encoder_default", "transposed_default"]


def export_unfolded() -> None:
    import torch

    sys.path.insert(0, str(ROOT / "scripts"))
    from make_torch_fixtures import MODELS, init_model

    for name in UNFOLDED:
        factory, scheme, inputs = MODELS[name]
        torch.manual_seed(sum(map(ord, name)))  # the seed make_torch_fixtures.py uses: same weights
        model = factory().eval()
        init_model(model, scheme)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, inputs(), str(OUT / f"{name}.unfolded.onnx"), dynamo=False, opset_version=17,
                              do_constant_folding=False)
        print(f"{name}.unfolded.onnx")


def keras_depthwise(folded: bool) -> onnx.ModelProto:
    """DepthwiseConv2D(kernel 3×3, 8 channels, depth multiplier 2), kernel drawn Glorot-uniform as Keras does.

    Keras computes the Glorot fans of the ``[3, 3, 8, 2]`` kernel as
    fan_in = 3·3·8 = 72, fan_out = 3·3·2 = 18; the per-group connectivity is 9 / 18.
    """
    kh, kw, channels, mult = 3, 3, 8, 2
    rng = np.random.default_rng(2024)
    bound = np.sqrt(6.0 / (kh * kw * channels + kh * kw * mult))
    kernel = rng.uniform(-bound, bound, (kh, kw, channels, mult)).astype(np.float32)
    inits = [numpy_helper.from_array(kernel, "depthwise_conv2d/kernel")]
    nodes = []
    if folded:
        inits.append(numpy_helper.from_array(np.array([kh, kw, 1, channels * mult], np.int64), "target"))
    else:
        def const(name: str, value: int) -> None:
            nodes.append(helper.make_node("Constant", [], [name],
                                          value=numpy_helper.from_array(np.array(value, np.int64))))
        nodes.append(helper.make_node("Shape", ["depthwise_conv2d/kernel"], ["kshape"]))
        const("i0", 0)
        const("i1", 1)
        const("one", 1)
        const("i2", 2)
        const("i3", 3)
        nodes.append(helper.make_node("Gather", ["kshape", "i0"], ["d0"], axis=0))
        nodes.append(helper.make_node("Gather", ["kshape", "i1"], ["d1"], axis=0))
        nodes.append(helper.make_node("Gather", ["kshape", "i2"], ["d2"], axis=0))
        nodes.append(helper.make_node("Gather", ["kshape", "i3"], ["d3"], axis=0))
        nodes.append(helper.make_node("Mul", ["d2", "d3"], ["cm"]))
        axes = numpy_helper.from_array(np.array([0], np.int64), "axes0")
        inits.append(axes)
        for src, dst in (("d0", "u0"), ("d1", "u1"), ("one", "u2"), ("cm", "u3")):
            nodes.append(helper.make_node("Unsqueeze", [src, "axes0"], [dst]))
        nodes.append(helper.make_node("Concat", ["u0", "u1", "u2", "u3"], ["target_i64"], axis=0))
        nodes.append(helper.make_node("Cast", ["target_i64"], ["target"], to=TensorProto.INT64))
    nodes += [
        helper.make_node("Reshape", ["depthwise_conv2d/kernel", "target"], ["k4"]),
        helper.make_node("Transpose", ["k4"], ["k_oihw"], perm=[3, 2, 0, 1]),
        helper.make_node("Conv", ["x", "k_oihw"], ["y"], group=channels, pads=[1, 1, 1, 1],
                         name="depthwise_conv2d/Conv"),
    ]
    graph = helper.make_graph(nodes, "keras_depthwise",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels * mult, 16, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="keras-style")
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    onnx.save(keras_depthwise(folded=False), OUT / "keras_depthwise.onnx")
    onnx.save(keras_depthwise(folded=True), OUT / "keras_depthwise.folded.onnx")
    print("keras_depthwise.onnx, keras_depthwise.folded.onnx")
    export_unfolded()


if __name__ == "__main__":
    main()
