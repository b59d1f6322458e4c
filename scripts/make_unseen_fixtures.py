#!/usr/bin/env python3
"""Regenerate tests/fixtures/unseen/: models whose weights an audit used to miss.

Built with onnx.helper and fixed seeds (checked with onnx.checker), except the last one:

* ``paddle_loop_decoder.onnx``: a decoder step in a ``Loop`` as Paddle2ONNX writes it: the
  weights are loop-carried inputs of the Loop (initializers and a Constant node outside, body
  graph inputs inside), passed on unchanged by the body (directly, through one Identity, through
  two), and read by MatMuls in the body; one of them is read outside the loop too. One carried
  matrix is changed by the body every iteration (a state, not a weight).
* ``scan_weights.onnx``: a ``Scan`` whose weights are state variables passed on unchanged, and
  scan inputs the body reads one slice at a time (along axis 0, and along axis 1).
* ``nested_loop.onnx``: a Loop in a Loop: one weight carried through both, one carried into the
  outer loop and read by the inner body as an outer-scope name.
* ``computed_weights.onnx``: weights computed from constants: Conv weights made by
  ``ConstantOfShape`` (0.02, as in the onnx package's ``light_*`` test models, and zero), a
  Conv weight ``Tile`` of a small constant, a MatMul weight ``Expand`` of one row.
* ``no_weights.onnx``: Relu only.
* ``lenet_noparams.onnx``: a LeNet-5 exported by ``torch.onnx.export(..., export_params=False)``
  (TorchScript exporter): its weights are graph inputs. Needs PyTorch (``torch==2.13.0``); the
  others do not, and ``--no-torch`` skips it.

    python scripts/make_unseen_fixtures.py [--no-torch]
"""
from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "unseen"
FLOAT = TensorProto.FLOAT


def xavier(rng: np.random.Generator, shape: Sequence[int], fan_in: int, fan_out: int) -> np.ndarray:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, shape).astype(np.float32)


def value(name: str, elem: int = FLOAT, shape: Sequence[int | str] | None = None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def finish(graph: onnx.GraphProto, opset: int = 17) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="make_unseen_fixtures")
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model


def paddle_loop_decoder() -> onnx.ModelProto:
    """Loop(trip, cond, h0, W_att, W_ctx, W_ih, W_hh, W_out, W_decay): five weights as loop inputs."""
    rng = np.random.default_rng(1901)
    hidden, vocab, steps = 16, 20, 4
    weights = {name: xavier(rng, (hidden, cols), hidden, cols) for name, cols in
               (("W_att", hidden), ("W_ctx", hidden), ("W_ih", hidden), ("W_hh", hidden), ("W_out", vocab))}
    decay = xavier(rng, (hidden, hidden), hidden, hidden)
    body = helper.make_graph(
        [helper.make_node("MatMul", ["h", "w_att"], ["q"], name="att_matmul"),
         helper.make_node("MatMul", ["q", "w_ctx"], ["ctx"], name="ctx_matmul"),
         helper.make_node("MatMul", ["ctx", "w_ih"], ["gi"], name="ih_matmul"),
         helper.make_node("MatMul", ["h", "w_hh"], ["gh"], name="hh_matmul"),
         helper.make_node("MatMul", ["h", "w_decay"], ["gd"], name="decay_matmul"),
         helper.make_node("Add", ["gi", "gh"], ["g"]),
         helper.make_node("Add", ["g", "gd"], ["g2"]),
         helper.make_node("Tanh", ["g2"], ["h_new"]),
         helper.make_node("MatMul", ["h_new", "w_out"], ["logits"], name="out_matmul"),
         helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Identity", ["w_att"], ["w_att_next"]),      # passed on through one Identity
         helper.make_node("Identity", ["w_hh"], ["w_hh_1"]),           # … through two
         helper.make_node("Identity", ["w_hh_1"], ["w_hh_next"]),
         helper.make_node("Constant", [], ["decay_rate"], value=numpy_helper.from_array(np.float32(0.9))),
         helper.make_node("Mul", ["w_decay", "decay_rate"], ["w_decay_next"])],  # changed every step
        "decoder_step",
        [value("i", TensorProto.INT64, []), value("cond_in", TensorProto.BOOL, []), value("h", FLOAT, [1, hidden]),
         value("w_att", FLOAT, [hidden, hidden]), value("w_ctx", FLOAT, [hidden, hidden]),
         value("w_ih", FLOAT, [hidden, hidden]), value("w_hh", FLOAT, [hidden, hidden]),
         value("w_out", FLOAT, [hidden, vocab]), value("w_decay", FLOAT, [hidden, hidden])],
        [value("cond_out", TensorProto.BOOL, []), value("h_new", FLOAT, [1, hidden]),
         value("w_att_next", FLOAT, [hidden, hidden]), value("w_ctx", FLOAT, [hidden, hidden]),
         value("w_ih", FLOAT, [hidden, hidden]), value("w_hh_next", FLOAT, [hidden, hidden]),
         value("w_out", FLOAT, [hidden, vocab]), value("w_decay_next", FLOAT, [hidden, hidden]),
         value("logits", FLOAT, [1, vocab])])
    nodes = [
        helper.make_node("Constant", [], ["W_ctx"], value=numpy_helper.from_array(weights.pop("W_ctx"), "W_ctx")),
        helper.make_node("MatMul", ["enc", "W_att"], ["h0"], name="init_matmul"),  # W_att is read outside too
        helper.make_node("Loop", ["trip", "cond", "h0", "W_att", "W_ctx", "W_ih", "W_hh", "W_out", "W_decay"],
                         ["h_last", "W_att_last", "W_ctx_last", "W_ih_last", "W_hh_last", "W_out_last",
                          "W_decay_last", "logits_all"], name="decoder_loop", body=body),
    ]
    inits = [numpy_helper.from_array(w, n) for n, w in weights.items()]
    inits += [numpy_helper.from_array(decay, "W_decay"), numpy_helper.from_array(np.int64(steps), "trip"),
              numpy_helper.from_array(np.bool_(True), "cond")]
    graph = helper.make_graph(nodes, "paddle_loop_decoder", [value("enc", FLOAT, [1, hidden])],
                              [value("logits_all", FLOAT, [steps, 1, vocab])], inits)
    return finish(graph)


def scan_weights() -> onnx.ModelProto:
    """Scan(h0, W_state, W_state2, x, W_steps, W_cols): states passed on, scan inputs sliced on axes 0, 0, 1."""
    rng = np.random.default_rng(1902)
    n, steps = 8, 5
    inits = {
        "h0": np.zeros((1, n), np.float32),
        "W_state": xavier(rng, (n, n), n, n),
        "W_state2": xavier(rng, (n, n), n, n),
        "W_steps": xavier(rng, (steps, n, n), n, n),   # one [n, n] matrix per step, scanned along axis 0
        "W_cols": xavier(rng, (n, steps, n), n, n),    # scanned along axis 1
    }
    body = helper.make_graph(
        [helper.make_node("MatMul", ["h", "w_state"], ["a"], name="state_matmul"),
         helper.make_node("MatMul", ["h", "w_state2"], ["b"], name="state2_matmul"),
         helper.make_node("MatMul", ["x_t", "w_step"], ["c"], name="step_matmul"),
         helper.make_node("MatMul", ["h", "w_col"], ["d"], name="col_matmul"),
         helper.make_node("Sum", ["a", "b", "c", "d"], ["s"]),
         helper.make_node("Tanh", ["s"], ["h_new"]),
         helper.make_node("Identity", ["w_state2"], ["w_state2_next"]),
         helper.make_node("Identity", ["h_new"], ["y_t"])],
        "scan_step",
        [value("h", FLOAT, [1, n]), value("w_state", FLOAT, [n, n]), value("w_state2", FLOAT, [n, n]),
         value("x_t", FLOAT, [1, n]), value("w_step", FLOAT, [n, n]), value("w_col", FLOAT, [n, n])],
        [value("h_new", FLOAT, [1, n]), value("w_state", FLOAT, [n, n]), value("w_state2_next", FLOAT, [n, n]),
         value("y_t", FLOAT, [1, n])])
    scan = helper.make_node("Scan", ["h0", "W_state", "W_state2", "x", "W_steps", "W_cols"],
                            ["h_last", "W_state_last", "W_state2_last", "y"], name="rnn_scan", body=body,
                            num_scan_inputs=3, scan_input_axes=[0, 0, 1])
    graph = helper.make_graph([scan], "scan_weights", [value("x", FLOAT, [steps, 1, n])],
                              [value("y", FLOAT, [steps, 1, n])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return finish(graph)


def nested_loop() -> onnx.ModelProto:
    """Loop(W1, W2) { Loop(W1) { MatMul(h, W1); MatMul(h, W2 by its outer name) } }."""
    rng = np.random.default_rng(1903)
    n = 12
    w1, w2 = xavier(rng, (n, n), n, n), xavier(rng, (n, n), n, n)
    inner = helper.make_graph(
        [helper.make_node("MatMul", ["h_in", "w1_in"], ["a"], name="inner_w1_matmul"),
         helper.make_node("MatMul", ["a", "w2_outer"], ["b"], name="inner_w2_matmul"),  # an outer body input
         helper.make_node("Tanh", ["b"], ["h_in_next"]),
         helper.make_node("Identity", ["c_in"], ["c_in_next"])],
        "inner_step",
        [value("j", TensorProto.INT64, []), value("c_in", TensorProto.BOOL, []), value("h_in", FLOAT, [1, n]),
         value("w1_in", FLOAT, [n, n])],
        [value("c_in_next", TensorProto.BOOL, []), value("h_in_next", FLOAT, [1, n]), value("w1_in", FLOAT, [n, n])])
    outer = helper.make_graph(
        [helper.make_node("Loop", ["inner_trip", "", "h_out", "w1_outer"], ["h_out_next", "w1_inner_last"],
                          name="inner_loop", body=inner),
         helper.make_node("Identity", ["c_out"], ["c_out_next"])],
        "outer_step",
        [value("i", TensorProto.INT64, []), value("c_out", TensorProto.BOOL, []), value("h_out", FLOAT, [1, n]),
         value("w1_outer", FLOAT, [n, n]), value("w2_outer", FLOAT, [n, n])],
        [value("c_out_next", TensorProto.BOOL, []), value("h_out_next", FLOAT, [1, n]),
         value("w1_outer", FLOAT, [n, n]), value("w2_outer", FLOAT, [n, n])])
    graph = helper.make_graph(
        [helper.make_node("Loop", ["outer_trip", "", "x", "W1", "W2"], ["y", "W1_last", "W2_last"], name="outer_loop",
                          body=outer)],
        "nested_loop", [value("x", FLOAT, [1, n])], [value("y", FLOAT, [1, n])],
        [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2"),
         numpy_helper.from_array(np.int64(3), "outer_trip"), numpy_helper.from_array(np.int64(2), "inner_trip")])
    return finish(graph)


def computed_weights() -> onnx.ModelProto:
    """Conv weights ConstantOfShape(0.02) [16, 3, 3, 3], ConstantOfShape() (zeros) [16, 16, 3, 3],
    Tile(small [4, 16, 3, 3], [4, 1, 1, 1]); MatMul weight Expand(row [1, 10], [1024, 10])."""
    rng = np.random.default_rng(1904)
    small = xavier(rng, (4, 16, 3, 3), 16 * 9, 16 * 9)
    row = xavier(rng, (1, 10), 1024, 10)
    def shape(name: str, dims: Sequence[int]) -> onnx.TensorProto:
        return numpy_helper.from_array(np.array(dims, np.int64), name)
    fill = numpy_helper.from_array(np.array([0.02], np.float32))
    nodes = [
        helper.make_node("ConstantOfShape", ["conv1_shape"], ["conv1.weight"], value=fill),
        helper.make_node("Conv", ["x", "conv1.weight"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("ConstantOfShape", ["conv2_shape"], ["conv2.weight"]),  # no value: float zeros
        helper.make_node("Conv", ["c1", "conv2.weight"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Tile", ["conv3_part", "conv3_repeats"], ["conv3.weight"]),
        helper.make_node("Conv", ["c2", "conv3.weight"], ["c3"], name="conv3", pads=[1, 1, 1, 1]),
        helper.make_node("Flatten", ["c3"], ["flat"]),
        helper.make_node("Expand", ["fc_row", "fc_shape"], ["fc.weight"]),
        helper.make_node("MatMul", ["flat", "fc.weight"], ["y"], name="fc"),
    ]
    inits = [shape("conv1_shape", [16, 3, 3, 3]), shape("conv2_shape", [16, 16, 3, 3]),
             numpy_helper.from_array(small, "conv3_part"), shape("conv3_repeats", [4, 1, 1, 1]),
             numpy_helper.from_array(row, "fc_row"), shape("fc_shape", [1024, 10])]
    graph = helper.make_graph(nodes, "computed_weights", [value("x", FLOAT, [1, 3, 8, 8])],
                              [value("y", FLOAT, [1, 10])], inits)
    return finish(graph)


def no_weights() -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "no_weights",
                              [value("x", FLOAT, [1, 8])], [value("y", FLOAT, [1, 8])])
    return finish(graph)


BUILDERS = {
    "paddle_loop_decoder.onnx": paddle_loop_decoder,
    "scan_weights.onnx": scan_weights,
    "nested_loop.onnx": nested_loop,
    "computed_weights.onnx": computed_weights,
    "no_weights.onnx": no_weights,
}


def export_without_parameters() -> None:
    """LeNet-5 (make_torch_fixtures.py's), exported with export_params=False: weights become graph inputs."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_torch_fixtures import LeNet5

    torch.manual_seed(1905)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(LeNet5().eval(), (torch.randn(1, 3, 32, 32),), str(OUT / "lenet_noparams.onnx"),
                          dynamo=False, opset_version=17, export_params=False)
    onnx.checker.check_model(onnx.load(OUT / "lenet_noparams.onnx"), full_check=True)
    print("lenet_noparams.onnx")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, build in BUILDERS.items():
        onnx.save(build(), OUT / name)
        print(name)
    if "--no-torch" not in sys.argv[1:]:
        export_without_parameters()


if __name__ == "__main__":
    main()
