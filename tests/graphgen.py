"""Hypothesis strategies for valid-but-strange ONNX graphs (structure-aware fuzzing).

Each generated model is a well-formed protobuf whose *graph* is odd: weight-carrying ops with
random attributes (groups that do not divide, mismatched hidden sizes, odd equations), weights of
odd ranks, zero-sized dimensions and unusual types, chains of Transpose / Reshape / Squeeze /
Cast / DequantizeLinear with arbitrary (often wrong) parameters, Reshape targets computed from
constants, dangling and duplicated names, deeply nested If / Loop / Scan bodies, model-local
functions and long node chains.  Used by tests/test_fuzz_graphs.py (a fixed sample) and
scripts/fuzz_graphs.py (long local runs).
"""
from __future__ import annotations

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from initaudit.trace.ops import OP_TABLE

MS = "com.microsoft"
FLOAT_TYPES = [TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16]
QUANT_TYPES = [TensorProto.INT8, TensorProto.UINT8, TensorProto.INT16]

dims = st.integers(min_value=0, max_value=6)
shapes = st.lists(dims, min_size=0, max_size=6).map(tuple)
small_ints = st.integers(min_value=-3, max_value=8)


def _values(draw, shape, kind: str) -> np.ndarray:
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if kind == "normal":
        values = rng.normal(0, draw(st.sampled_from([1e-6, 0.05, 1.0, 1e4])), count)
    elif kind == "constant":
        values = np.full(count, draw(st.sampled_from([0.0, 0.5, -3.0])))
    elif kind == "special":
        values = rng.normal(0, 1, count)
        if count:
            values[rng.integers(0, count, max(1, count // 3))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1e38]))
    else:
        values = rng.integers(-128, 128, count).astype(np.float64)
    return values.reshape(shape)


@st.composite
def weight_tensors(draw, name: str, shape=None):
    """A stored tensor of any numeric type used for weights."""
    shape = draw(shapes) if shape is None else shape
    dtype = draw(st.sampled_from(FLOAT_TYPES + QUANT_TYPES))
    values = _values(draw, shape, draw(st.sampled_from(["normal", "constant", "special", "ints"])))
    if dtype in QUANT_TYPES:
        info = np.iinfo(helper.tensor_dtype_to_np_dtype(dtype))
        array = np.clip(np.nan_to_num(values), info.min, info.max).astype(helper.tensor_dtype_to_np_dtype(dtype))
        return numpy_helper.from_array(array, name)
    if dtype == TensorProto.BFLOAT16:
        tensor = TensorProto(name=name, data_type=dtype, dims=list(shape))
        tensor.raw_data = (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
        return tensor
    with np.errstate(over="ignore"):
        return numpy_helper.from_array(values.astype(helper.tensor_dtype_to_np_dtype(dtype)), name)


def _node(op: str, inputs, outputs, name: str = "", domain: str = "", **attrs) -> onnx.NodeProto:
    """helper.make_node, but an empty list attribute is typed INTS (make_node cannot infer it)."""
    node = helper.make_node(op, inputs, outputs, name=name, domain=domain)
    for key, value in attrs.items():
        if isinstance(value, list) and all(isinstance(v, int) for v in value):
            node.attribute.append(helper.make_attribute(key, value, attr_type=onnx.AttributeProto.INTS))
        else:
            node.attribute.append(helper.make_attribute(key, value))
    return node


def _int_tensor(name: str, values) -> TensorProto:
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


@st.composite
def pass_through(draw, source: str, prefix: str, nodes: list, inits: list) -> str:
    """A chain of value-preserving / axis-moving nodes after ``source``; returns the last name."""
    current = source
    for i in range(draw(st.integers(0, 4))):
        out = f"{prefix}_p{i}"
        op = draw(st.sampled_from(["Transpose", "TransposeNoPerm", "Reshape", "ReshapeComputed", "Flatten",
                                   "Squeeze", "Unsqueeze", "Cast", "CastLike", "Identity", "Dequantize",
                                   "ConcatSlices"]))
        if op == "Transpose":
            perm = draw(st.lists(small_ints, min_size=0, max_size=5))
            nodes.append(_node("Transpose", [current], [out], perm=perm))
        elif op == "TransposeNoPerm":
            nodes.append(_node("Transpose", [current], [out]))
        elif op == "Reshape":
            target = draw(st.lists(st.integers(-2, 12), min_size=0, max_size=5))
            inits.append(_int_tensor(f"{out}_shape", target))
            nodes.append(_node("Reshape", [current, f"{out}_shape"], [out],
                                          allowzero=draw(st.integers(0, 1))))
        elif op == "ReshapeComputed":  # the target computed from the weight's own Shape (unfolded exports)
            cut = draw(st.integers(-3, 4))
            inits.append(_int_tensor(f"{out}_cut", [cut]))
            inits.append(_int_tensor(f"{out}_m1", [-1]))
            nodes += [_node("Shape", [current], [f"{out}_s"]),
                      _node("Slice", [f"{out}_s", f"{out}_cut", f"{out}_m1"], [f"{out}_head"])
                      if draw(st.booleans()) else
                      _node("Gather", [f"{out}_s", f"{out}_cut"], [f"{out}_head"], axis=0),
                      _node("Concat", [f"{out}_head", f"{out}_m1"], [f"{out}_t"], axis=0),
                      _node("Reshape", [current, f"{out}_t"], [out])]
        elif op == "Flatten":
            nodes.append(_node("Flatten", [current], [out], axis=draw(small_ints)))
        elif op in ("Squeeze", "Unsqueeze"):
            axes = draw(st.lists(small_ints, min_size=0, max_size=3))
            if draw(st.booleans()):
                inits.append(_int_tensor(f"{out}_axes", axes))
                nodes.append(_node(op, [current, f"{out}_axes"], [out]))
            else:
                nodes.append(_node(op, [current], [out]))
        elif op == "Cast":
            nodes.append(_node("Cast", [current], [out], to=draw(st.sampled_from(FLOAT_TYPES))))
        elif op == "CastLike":
            nodes.append(_node("CastLike", [current, "x"], [out]))
        elif op == "Identity":
            nodes.append(_node("Identity", [current], [out]))
        elif op == "Dequantize":
            scale_shape = draw(st.sampled_from([(), (1,), (draw(dims),), (draw(dims), draw(dims))]))
            inits.append(numpy_helper.from_array(np.full(scale_shape, 0.01, np.float32), f"{out}_scale"))
            attrs = {"axis": draw(small_ints)}
            if draw(st.booleans()):
                attrs["block_size"] = draw(st.integers(0, 4))
            nodes.append(_node("DequantizeLinear", [current, f"{out}_scale"], [out], **attrs))
        else:  # Concat of Slices of one tensor (a gate reordering), bounds arbitrary
            pieces = []
            for j in range(draw(st.integers(1, 3))):
                a, b = draw(small_ints), draw(small_ints)
                inits += [_int_tensor(f"{out}_a{j}", [a]), _int_tensor(f"{out}_b{j}", [b])]
                nodes.append(_node("Slice", [current, f"{out}_a{j}", f"{out}_b{j}"], [f"{out}_sl{j}"]))
                pieces.append(f"{out}_sl{j}")
            nodes.append(_node("Concat", pieces, [out], axis=draw(small_ints)))
        current = out
    return current


def _attrs(draw, op: str) -> dict:
    if op in ("Conv", "ConvTranspose", "ConvInteger", "DeformConv", "FusedConv", "NhwcConv"):
        return {"group": draw(st.integers(0, 5))} if draw(st.booleans()) else {}
    if op in ("Gemm", "FusedGemm", "FusedMatMul"):
        return {"transA": draw(st.integers(0, 1)), "transB": draw(st.integers(0, 1)),
                "alpha": draw(st.sampled_from([1.0, 0.0, -2.0, 1e-30, float("nan")]))}
    if op in ("LSTM", "GRU", "RNN", "DynamicQuantizeLSTM"):
        attrs = {"direction": draw(st.sampled_from(["forward", "reverse", "bidirectional", "sideways"]))}
        if draw(st.booleans()):
            attrs["hidden_size"] = draw(st.integers(-1, 8))
        return attrs
    if op == "Einsum":
        letters = "abcij"
        term = lambda: "".join(draw(st.lists(st.sampled_from(letters), max_size=4)))  # noqa: E731
        eq = f"{term()},{term()}" + (f"->{term()}" if draw(st.booleans()) else "")
        return {"equation": draw(st.sampled_from([eq, "...ij,jk->...ik", "ij,jk", "ii,i->i", ",", "->"]))}
    if op == "Attention":
        attrs = {"num_heads": draw(st.integers(1, 4))}
        if draw(st.booleans()):
            attrs["qkv_hidden_sizes"] = draw(st.lists(st.integers(0, 6), min_size=0, max_size=4))
        return attrs
    if op == "MatMulNBits":
        return {"N": draw(st.integers(0, 8)), "K": draw(st.integers(0, 40)), "bits": draw(st.sampled_from([1, 2, 4, 8])),
                "block_size": draw(st.sampled_from([0, 1, 16, 32]))}
    if op == "Gather":
        return {"axis": draw(small_ints)}
    return {}


#: (op, domain, weight slot, number of inputs): every weight slot of every op in initaudit's op table,
#: and two ops outside it (a plain op, a vendor's op) that read weights too
CONSUMERS = [(spec.op, spec.domain, slot, spec.inputs) for spec in OP_TABLE for slot in spec.weight_slots
             if slot < spec.inputs] + [("Add", "", 1, 2), ("VendorOp", "vendor.x", 1, 2)]


@st.composite
def consumer_nodes(draw, weight: str, prefix: str, nodes: list, inits: list) -> None:
    """A weight-carrying node reading ``weight`` at its weight slot, other inputs scales/activations."""
    op, domain, slot, arity = draw(st.sampled_from(CONSUMERS))
    inputs = ["x"] * arity
    for i in range(arity):
        if i == slot:
            inputs[i] = weight
        elif i > 1 and draw(st.booleans()):
            name = f"{prefix}_in{i}"
            shape = draw(st.sampled_from([(), (1,), (draw(dims),)]))
            value = np.full(shape, draw(st.sampled_from([0.02, 0.0, -1.0, 3.0])), np.float32)
            if draw(st.booleans()):
                value = value.astype(np.int8)
            inits.append(numpy_helper.from_array(value, name))
            inputs[i] = name
        elif i > 1 and draw(st.booleans()):
            inputs[i] = ""  # an omitted optional input
    node = _node(op, inputs, [f"{prefix}_out"], name=draw(st.sampled_from([f"{prefix}_node", "", "dup"])),
                            domain=domain, **_attrs(draw, op))
    nodes.append(node)
    # what follows the layer: an activation, a pooling, a Split (packed projections), or nothing
    follow = draw(st.sampled_from(["none", "Relu", "LeakyRelu", "MaxPool", "Split", "Reshape3", "PRelu"]))
    out = f"{prefix}_out"
    if follow == "MaxPool":
        nodes.append(_node("MaxPool", [out], [f"{prefix}_f"], kernel_shape=draw(
            st.lists(st.integers(0, 3), max_size=3))))
    elif follow == "Split":
        nodes.append(_node("Split", [out], [f"{prefix}_s{i}" for i in range(draw(st.integers(1, 4)))],
                                      axis=-1))
    elif follow == "Reshape3":
        inits.append(_int_tensor(f"{prefix}_r3", [0, 0, draw(st.integers(-1, 4)), draw(st.integers(-1, 16))]))
        nodes.append(_node("Reshape", [out, f"{prefix}_r3"], [f"{prefix}_f"]))
    elif follow == "PRelu":
        inits.append(numpy_helper.from_array(np.full(draw(shapes), 0.1, np.float32), f"{prefix}_slope"))
        nodes.append(_node("PRelu", [out, f"{prefix}_slope"], [f"{prefix}_f"]))
    elif follow != "none":
        nodes.append(_node(follow, [out], [f"{prefix}_f"]))


@st.composite
def layer_graph(draw, prefix: str, outer_weights: list[str]):
    """Nodes and initializers of one graph: some layers, some reading outer-scope weights."""
    nodes: list = []
    inits: list = []
    for i in range(draw(st.integers(0, 4))):
        p = f"{prefix}{i}"
        if outer_weights and draw(st.integers(0, 3)) == 0:
            weight = draw(st.sampled_from(outer_weights))
        elif draw(st.integers(0, 5)) == 0:
            weight = f"{p}_dangling"  # defined nowhere
        elif draw(st.integers(0, 5)) == 0:
            tensor = draw(weight_tensors(f"{p}_c"))
            nodes.append(_node("Constant", [], [f"{p}_w"], value=tensor))
            weight = f"{p}_w"
        else:
            inits.append(draw(weight_tensors(f"{p}_w")))
            weight = f"{p}_w"
            if draw(st.integers(0, 6)) == 0:
                inits.append(draw(weight_tensors(f"{p}_w")))  # a duplicated initializer name
        weight = draw(pass_through(weight, p, nodes, inits))
        draw(consumer_nodes(weight, p, nodes, inits))
    return nodes, inits


@st.composite
def nested(draw, prefix: str, depth: int, outer: list[str]):
    """Control-flow nodes whose bodies hold layers, nested up to ``depth``."""
    nodes, inits = draw(layer_graph(prefix, outer))
    names = outer + [t.name for t in inits]
    if depth > 0 and draw(st.booleans()):
        kind = draw(st.sampled_from(["If", "Loop", "Scan"]))
        body_nodes, body_inits = draw(nested(f"{prefix}b", depth - 1, names))
        out = helper.make_tensor_value_info(f"{prefix}_bo", TensorProto.FLOAT, None)
        body_nodes = [*body_nodes, _node("Identity", ["x"], [f"{prefix}_bo"])]
        if kind == "If":
            body = helper.make_graph(body_nodes, f"{prefix}_then", [], [out], body_inits)
            other = helper.make_graph([_node("Identity", ["x"], [f"{prefix}_bo2"])], f"{prefix}_else", [],
                                      [helper.make_tensor_value_info(f"{prefix}_bo2", TensorProto.FLOAT, None)])
            nodes.append(_node("If", ["cond"], [f"{prefix}_if"], then_branch=body, else_branch=other))
        else:
            inputs = [helper.make_tensor_value_info(f"{prefix}_i{j}", TensorProto.FLOAT, None) for j in range(2)]
            body = helper.make_graph(body_nodes, f"{prefix}_body", inputs, [out], body_inits)
            if kind == "Loop":
                nodes.append(_node("Loop", ["", "cond"], [f"{prefix}_loop"], body=body))
            else:
                nodes.append(_node("Scan", ["x"], [f"{prefix}_scan"], body=body, num_scan_inputs=1))
    return nodes, inits


@st.composite
def strange_models(draw) -> onnx.ModelProto:
    nodes, inits = draw(nested("n", draw(st.integers(0, 6)), []))
    functions = []
    if draw(st.integers(0, 4)) == 0:  # a model-local function whose body reads its formal input as a weight
        fn_nodes: list = []
        fn_inits: list = []
        draw(consumer_nodes("fw", "fn", fn_nodes, fn_inits))
        fn_nodes = [_node("Constant", [], [t.name], value=t) for t in fn_inits] + fn_nodes
        functions.append(helper.make_function("local", "Fn", ["x", "fw"], ["fn_out"], fn_nodes,
                                              [helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)]))
        weight = draw(weight_tensors("fn_weight"))
        inits.append(weight)
        nodes.append(_node("Fn", ["x", "fn_weight"], ["fn_call_out"], domain="local"))
    if draw(st.integers(0, 8)) == 0:  # a long chain: deeper than any tracing limit
        length = draw(st.integers(50, 3000))
        inits.append(draw(weight_tensors("chain_w", (4, 3))))
        nodes += [_node("Identity", [f"chain_{i - 1}" if i else "chain_w"], [f"chain_{i}"])
                  for i in range(length)]
        nodes.append(_node("MatMul", ["x", f"chain_{length - 1}"], ["chain_out"]))
    if draw(st.integers(0, 8)) == 0:  # many consumers of one weight
        inits.append(draw(weight_tensors("shared_w", (4, 4))))
        nodes += [_node("MatMul", ["x", "shared_w"], [f"shared_{i}"]) for i in range(draw(st.integers(2, 500)))]
    if nodes and draw(st.integers(0, 6)) == 0:  # a name produced twice
        nodes.append(_node("Identity", ["x"], [nodes[0].output[0] if nodes[0].output else "x"]))
    if nodes and draw(st.integers(0, 6)) == 0:  # nodes out of topological order
        nodes = nodes[::-1]
    graph = helper.make_graph(nodes, "strange", [helper.make_tensor_value_info("x", TensorProto.FLOAT, draw(
        st.sampled_from([None, [1, 4], [2, 3, 4, 4], ["N", 4]]))),
        helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    opsets = [helper.make_opsetid("", draw(st.sampled_from([7, 11, 13, 17, 21]))), helper.make_opsetid(MS, 1),
              helper.make_opsetid("vendor.x", 1), helper.make_opsetid("local", 1)]
    model = helper.make_model(graph, opset_imports=opsets, functions=functions, producer_name="graphgen")
    model.ir_version = draw(st.sampled_from([3, 7, 9, 10]))
    return model


class Hang(Exception):
    """The per-model time limit ran out."""


def audit_strange(model: onnx.ModelProto, folder, seconds: int = 20) -> str:
    """Audit one generated model in-process under a time limit; returns 'ok' or 'refused' (a one-line error).

    Anything else — an exception that is not InitauditError, a hang — propagates.
    """
    import signal

    import initaudit
    from initaudit.errors import InitauditError
    from initaudit.report.formats import render

    path = folder / "strange.onnx"
    path.write_bytes(model.SerializeToString())

    def on_alarm(signum, frame):
        raise Hang(f"no result within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        report = initaudit.audit(path, jobs=1)
        render(report, "json")
        render(report, "table")
        return "ok"
    except InitauditError as exc:
        assert "\n" not in str(exc).strip(), str(exc)
        return "refused"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
