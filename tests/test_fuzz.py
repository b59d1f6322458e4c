"""The wire-format reader against onnx's own parse, and malformed files fuzzed with hypothesis.

Whatever the bytes, initaudit ends with exit code 0, 1 or 2 — 2 with a single
line on stderr — and never a traceback, a hang or an allocation the file does
not back.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

from initaudit.cli.main import main
from initaudit.read.loader import load_model
from initaudit.read.protoscan import strip_payloads

ROOT = Path(__file__).resolve().parent.parent
MODELS = sorted((ROOT / "sample_models").glob("*.onnx")) + sorted((ROOT / "tests/fixtures/torch").glob("*.onnx"))
SEEDS = [ROOT / "sample_models/lenet_xavier.onnx", ROOT / "tests/fixtures/torch/recurrent_xavier.legacy.onnx",
         ROOT / "tests/fixtures/torch/encoder_default.legacy.onnx"]


def _all_tensors(model: onnx.ModelProto):
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        yield from graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                if attr.HasField("g"):
                    graphs.append(attr.g)
                graphs.extend(attr.graphs)


@pytest.mark.parametrize("path", MODELS, ids=[p.name for p in MODELS])
def test_every_tensor_reads_as_onnx_parses_it(path):
    reference = list(_all_tensors(onnx.load(str(path))))
    with load_model(path) as loaded:
        ours = list(_all_tensors(loaded.proto))
        assert [t.name for t in ours] == [t.name for t in reference]
        for mine, theirs in zip(ours, reference):
            expected = numpy_helper.to_array(theirs)
            got = loaded.source(mine).to_array()
            assert got.shape == expected.shape and got.tobytes() == expected.astype(got.dtype).tobytes(), mine.name


def test_strip_keeps_everything_but_payloads():
    data = SEEDS[0].read_bytes()
    stripped = strip_payloads(data, min_bytes=1024)
    original, parsed = onnx.load_model_from_string(data), onnx.load_model_from_string(stripped.data)
    assert stripped.payloads == 5 and len(stripped.data) < 10_000  # the five weights; biases stay inline
    for a, b in zip(original.graph.initializer, parsed.graph.initializer):
        assert (a.name, list(a.dims), a.data_type) == (b.name, list(b.dims), b.data_type)
        if b.data_location == onnx.TensorProto.EXTERNAL:
            info = {e.key: e.value for e in b.external_data}
            start, length = int(info["offset"]), int(info["length"])
            assert data[start:start + length] == a.raw_data
    assert original.graph.node == parsed.graph.node


def _run(tmp_path, data: bytes, capsys) -> None:
    path = tmp_path / "fuzzed.onnx"
    path.write_bytes(data)
    code = main([str(path), "--format", "json", "-j", "1"])
    out, err = capsys.readouterr()
    assert code in (0, 1, 2)
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("initaudit: error: ")
        assert json.loads(out)["status"] == "error"  # the unreadable model is still reported
    assert "Traceback" not in err and "internal error" not in err


#: The suite runs a fixed set of examples (the same in every CI run); INITAUDIT_FUZZ_EXAMPLES=N
#: explores N fresh random ones per test for a longer local hunt.
_EXAMPLES = os.environ.get("INITAUDIT_FUZZ_EXAMPLES")
FUZZ = settings(max_examples=int(_EXAMPLES or 60), derandomize=_EXAMPLES is None, deadline=5000,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(seed=st.sampled_from(SEEDS), cut=st.floats(0, 1))
def test_truncated_models(tmp_path, capsys, seed, cut):
    data = seed.read_bytes()
    _run(tmp_path, data[:int(len(data) * cut)], capsys)


@FUZZ
@given(seed=st.sampled_from(SEEDS), edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)),
                                                      min_size=1, max_size=8))
def test_mutated_models(tmp_path, capsys, seed, edits):
    data = bytearray(seed.read_bytes())
    for where, value in edits:
        data[min(int(where * len(data)), len(data) - 1)] = value
    _run(tmp_path, bytes(data), capsys)


@FUZZ
@given(seed=st.sampled_from(SEEDS), where=st.floats(0, 1), junk=st.binary(min_size=1, max_size=64))
def test_inserted_bytes(tmp_path, capsys, seed, where, junk):
    data = seed.read_bytes()
    at = int(where * len(data))
    _run(tmp_path, data[:at] + junk + data[at:], capsys)


def test_huge_claimed_dims_are_refused_without_allocating(tmp_path, capsys):
    model = onnx.load(str(SEEDS[0]))
    weight = model.graph.initializer[0]
    weight.dims[0] = 10**12  # claims 3.0e15 values, backed by 1,800 bytes
    path = tmp_path / "huge.onnx"
    onnx.save(model, path)
    assert main([str(path)]) == 2
    assert "needs" in capsys.readouterr().err


def test_names_that_are_not_utf8(tmp_path, capsys):
    data = SEEDS[0].read_bytes().replace(b"\x22\x04Gemm", b"\x22\x04G\xa8mm", 1)  # NodeProto.op_type
    path = tmp_path / "bad_name.onnx"
    path.write_bytes(data)
    assert main([str(path)]) == 2
    assert "utf-8" in capsys.readouterr().err.lower()  # protobuf's pure-Python runtime refuses it while parsing


def test_attribute_of_the_wrong_type_is_a_finding(tmp_path, capsys):
    model = onnx.load(str(SEEDS[0]))
    gemm = next(node for node in model.graph.node if node.op_type == "Gemm")
    del gemm.attribute[:]
    gemm.attribute.append(onnx.helper.make_attribute("transB", "yes"))
    path = tmp_path / "bad_attr.onnx"
    onnx.save(model, path)
    assert main([str(path), "--format", "json"]) in (0, 1)
    assert '"IA301"' in capsys.readouterr().out
