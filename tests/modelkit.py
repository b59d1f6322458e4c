"""Build small ONNX models in memory for tests (onnx helper API, fixed seeds)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def xavier_uniform(rng: np.random.Generator, shape: Sequence[int], fan_in: int, fan_out: int,
                   factor: float = 1.0) -> np.ndarray:
    bound = math.sqrt(3.0 * factor * 2.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, shape).astype(np.float32)


def tensor(name: str, values: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.asarray(values), name)


def model(nodes: list, initializers: list[TensorProto], inputs: Sequence[tuple[str, int, list]] = (("x", 1, None),),
          outputs: Sequence[str] = ("y",), opset: int = 17, functions: Sequence = (),
          extra_opsets: Sequence = ()) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        initializers,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *extra_opsets],
                          functions=list(functions), producer_name="initaudit-tests")
    m.ir_version = 9
    return m


def save(m: onnx.ModelProto, folder: Path, name: str = "model.onnx") -> Path:
    path = folder / name
    onnx.save(m, path)
    return path


def single_op(op: str, weight: np.ndarray, weight_slot: int = 1, name: str = "w", **attrs) -> onnx.ModelProto:
    """``y = op(x, w)`` (or with the weight at another slot)."""
    inputs = ["x", "x"]
    inputs[weight_slot] = name
    node = helper.make_node(op, inputs, ["y"], name=f"{op}_0", **attrs)
    return model([node], [tensor(name, weight)])


def bfloat16(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 values rounded to bfloat16 (nearest, ties to even; finite values only): the stored
    16-bit codes and the float32 numbers they stand for (a bfloat16 is the top half of a float32)."""
    bits = np.asarray(values, np.float32).view(np.uint32).astype(np.uint64)
    codes = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return codes, (codes.astype(np.uint32) << 16).view(np.float32)


def raw_tensor(name: str, data_type: int, dims: Sequence[int], raw: bytes) -> TensorProto:
    """A tensor from its raw bytes, for element types older onnx helpers cannot build from numbers."""
    t = TensorProto(name=name, data_type=data_type, raw_data=raw)
    t.dims.extend(dims)
    return t


def to_external(m: onnx.ModelProto, folder: Path, names: set[str] | None = None, offset_pad: int = 0) -> None:
    """Move the raw data of ``names`` (every initializer by default) to ``folder/w.bin``, the first one
    ``offset_pad`` bytes in (an unaligned offset when odd)."""
    blob = bytearray(b"\0" * offset_pad)
    for init in m.graph.initializer:
        if names is not None and init.name not in names:
            continue
        data = init.raw_data
        init.ClearField("raw_data")
        init.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "w.bin"), ("offset", str(len(blob))), ("length", str(len(data)))):
            init.external_data.add(key=key, value=value)
        blob += data
    (folder / "w.bin").write_bytes(bytes(blob))
