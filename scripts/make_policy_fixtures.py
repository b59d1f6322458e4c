#!/usr/bin/env python3
"""Regenerate tests/fixtures/policy/: models whose init policy is known by construction.

``mixed_schemes_cnn.onnx``: a small CNN whose six layers were each drawn by a fan-based
scheme, as ``torch.nn.init`` draws them (the formulas below), but not one scheme for all:

    conv1 3→8 k3     kaiming_normal_(mode="fan_out")  std √(2/72)    (fans 27, 72)
    conv2 8→16 k3    kaiming_normal_(mode="fan_in")   std √(2/72)    (fans 72, 144)
    conv3 16→16 k3   xavier_normal_                   std √(2/288)   (fans 144, 144)
    conv4 16→32 k3   kaiming_normal_(mode="fan_out")  std √(2/288)   (fans 144, 288)
    fc1 512→128      xavier_uniform_                  var 2/640
    fc2 128→10       xavier_uniform_                  var 2/138

A conv's fan_out is the next conv's fan_in, so conv1 and conv2 have the same std by
coincidence, and so have conv3 and conv4: two groups of equal stds that no fixed-std
init produced.  Built with the onnx helper API and a fixed seed:
    python scripts/make_policy_fixtures.py
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "policy"


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """torch's _calculate_fan_in_and_fan_out: (in·k·k, out·k·k) of an [out, in, k, k] weight."""
    rf = math.prod(shape[2:])
    return shape[1] * rf, shape[0] * rf


def kaiming_normal(rng, shape, mode: str):
    fi, fo = fans(shape)
    return rng.normal(0.0, math.sqrt(2.0 / (fi if mode == "fan_in" else fo)), shape)


def xavier_normal(rng, shape):
    fi, fo = fans(shape)
    return rng.normal(0.0, math.sqrt(2.0 / (fi + fo)), shape)


def xavier_uniform(rng, shape):
    fi, fo = fans(shape)
    bound = math.sqrt(6.0 / (fi + fo))
    return rng.uniform(-bound, bound, shape)


#: (name, torch weight shape, init)
LAYERS = [
    ("conv1", (8, 3, 5, 5), lambda rng, s: kaiming_normal(rng, s, "fan_out")),
    ("conv2", (16, 8, 5, 5), lambda rng, s: kaiming_normal(rng, s, "fan_in")),
    ("conv3", (32, 16, 3, 3), xavier_normal),
    ("conv4", (48, 32, 3, 3), lambda rng, s: kaiming_normal(rng, s, "fan_out")),
    ("fc1", (128, 768), xavier_uniform),
    ("fc2", (10, 128), xavier_uniform),
]


def mixed_schemes_cnn(seed: int = 19) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits, nodes, x = [], [], "input"
    for name, shape, init in LAYERS:
        inits.append(numpy_helper.from_array(init(rng, shape).astype(np.float32), f"{name}.weight"))
        inits.append(numpy_helper.from_array(np.zeros(shape[0], np.float32), f"{name}.bias"))
        args = [x, f"{name}.weight", f"{name}.bias"]
        if name.startswith("conv"):
            nodes.append(helper.make_node("Conv", args, [f"{name}_out"], pads=[shape[2] // 2] * 4, name=f"/{name}/Conv"))
        else:
            if name == "fc1":
                nodes.append(helper.make_node("Flatten", [x], ["flat"], axis=1, name="/Flatten"))
                args[0] = "flat"
            nodes.append(helper.make_node("Gemm", args, [f"{name}_out"], transB=1, name=f"/{name}/Gemm"))
        x = f"{name}_out"
        if name != "fc2":
            nodes.append(helper.make_node("Relu", [x], [f"{name}_relu"], name=f"/{name}_relu/Relu"))
            x = f"{name}_relu"
    graph = helper.make_graph(
        nodes, "mixed_schemes_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 4, 4])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, producer_name="initaudit-fixtures", opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    onnx.save(mixed_schemes_cnn(), OUT / "mixed_schemes_cnn.onnx")


if __name__ == "__main__":
    main()
