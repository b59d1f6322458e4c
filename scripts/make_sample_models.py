#!/usr/bin/env python3
"""Regenerate sample_models/: small LeNet-5-shaped ONNX models with known inits.

Built with the onnx helper API and fixed seeds, so the files are reproducible:
    python scripts/make_sample_models.py
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = Path(__file__).resolve().parent.parent / "sample_models"

# LeNet-5 on 3×32×32 inputs: conv 3→6 k5, pool 2, conv 6→16 k5, pool 2, fc 400→120→84→10.
LAYERS = [
    ("conv1.weight", (6, 3, 5, 5)),
    ("conv2.weight", (16, 6, 5, 5)),
    ("fc1.weight", (120, 400)),
    ("fc2.weight", (84, 120)),
    ("fc3.weight", (10, 84)),
]


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    rf = math.prod(shape[2:])
    return shape[1] * rf, shape[0] * rf


def xavier(rng, shape):
    fi, fo = fans(shape)
    bound = math.sqrt(6.0 / (fi + fo))
    return rng.uniform(-bound, bound, shape)


def torch_default(rng, shape):
    bound = 1.0 / math.sqrt(fans(shape)[0])  # kaiming_uniform_(a=√5): Var = 1/(3·fan_in)
    return rng.uniform(-bound, bound, shape)


def std_one(rng, shape):
    return rng.standard_normal(shape)


def lenet(init, seed: int, dead: str | None = None) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    for name, shape in LAYERS:
        values = np.zeros(shape) if name == dead else init(rng, shape)
        inits.append(numpy_helper.from_array(values.astype(np.float32), name))
        bias = name.replace("weight", "bias")
        inits.append(numpy_helper.from_array(np.zeros(shape[0], np.float32), bias))
    x = "input"
    for i, (conv, pool) in enumerate((("conv1", "pool1"), ("conv2", "pool2")), 1):
        nodes += [
            helper.make_node("Conv", [x, f"{conv}.weight", f"{conv}.bias"], [f"{conv}_out"], name=f"/{conv}/Conv"),
            helper.make_node("Relu", [f"{conv}_out"], [f"relu{i}"], name=f"/relu{i}/Relu"),
            helper.make_node("MaxPool", [f"relu{i}"], [f"{pool}_out"], kernel_shape=[2, 2], strides=[2, 2],
                             name=f"/{pool}/MaxPool"),
        ]
        x = f"{pool}_out"
    nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1, name="/Flatten"))
    x = "flat"
    for fc in ("fc1", "fc2", "fc3"):
        nodes.append(helper.make_node("Gemm", [x, f"{fc}.weight", f"{fc}.bias"], [f"{fc}_out"], transB=1,
                                      name=f"/{fc}/Gemm"))
        x = f"{fc}_out"
        if fc != "fc3":
            nodes.append(helper.make_node("Relu", [x], [f"{fc}_relu"], name=f"/{fc}_relu/Relu"))
            x = f"{fc}_relu"
    graph = helper.make_graph(
        nodes, "lenet5",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, producer_name="initaudit-samples", opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


SAMPLES = {
    "lenet_xavier.onnx": (xavier, 1, None),
    "lenet_std1.onnx": (std_one, 2, None),
    "lenet_torch_default.onnx": (torch_default, 3, None),
    "lenet_dead_layer.onnx": (xavier, 4, "conv2.weight"),
}


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for filename, (init, seed, dead) in SAMPLES.items():
        onnx.save(lenet(init, seed, dead), OUT / filename)
        print(f"wrote {OUT / filename}")


if __name__ == "__main__":
    main()
