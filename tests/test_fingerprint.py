"""Finding identities (report/fingerprint.py): stable across runs, positions and re-exports."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from initaudit.findings import Finding
from initaudit.measure.stats import TensorStats
from initaudit.report.fingerprint import (
    content_signature,
    digest,
    file_uri,
    is_inside,
    located_findings,
    relative_path,
    unreadable_fingerprint,
)
from initaudit.report.model import LayerReport, ModelReport, Report


def sha(*parts: str) -> str:
    """The documented identity: sha256 of "v1" and the parts joined by the unit separator, 32 hex digits."""
    return hashlib.sha256("\x1f".join(("v1", *parts)).encode("utf-8")).hexdigest()[:32]


def layer(name: str, findings: tuple[Finding, ...], graph: str = "main", shape=(4, 3), lo=-0.5, hi=0.25) -> LayerReport:
    stats = TensorStats(12, 0.0, 0.04, lo, hi, 0.1, 2, 3)
    return LayerReport(name, graph, f"/{name}/MatMul", "MatMul", shape, "float32", "inline", "IO", 1, None, 4, 3,
                       stats, "xavier", 0.1, 0.4, "fail", (), "normal", findings)


def report(*layers: LayerReport, model_findings: tuple[Finding, ...] = (), path: str = "models/net.onnx") -> Report:
    model = ModelReport(path, 17, "test", 9, "xavier", "connectivity", "init", tuple(layers), findings=model_findings)
    return Report((model,))


F101 = Finding("IA101", "fail", "variance 3× the xavier target")
F204 = Finding("IA204", "warn", "mean 0.3 σ")
F501 = Finding("IA501", "fail", "breaks the policy")


def test_digest_is_sha256_of_the_version_and_the_parts():
    assert digest("a", "b") == sha("a", "b") == hashlib.sha256(b"v1\x1fa\x1fb").hexdigest()[:32]
    assert len(digest("x")) == 32 and digest("a", "b") != digest("ab") != digest("a\x1fb", "")


def test_relative_path_to_the_working_directory_or_a_root(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    assert relative_path(str(tmp_path / "models" / "a.onnx")) == "models/a.onnx"
    assert relative_path("models/a.onnx", tmp_path / "models") == "a.onnx"
    assert relative_path(str(tmp_path / "a.onnx"), tmp_path / "models") == "../a.onnx"


def test_is_inside():
    assert is_inside("models/a.onnx") and is_inside("a.onnx") and is_inside("..a.onnx")
    assert not is_inside("..") and not is_inside("../a.onnx") and not is_inside("/abs/a.onnx")


def test_content_signature_names_shape_dtype_total_range_zeros_nonfinite():
    # total = 12 finite + 2 non-finite; the range written with repr (every digit of the float)
    assert content_signature(layer("w", (), lo=-0.1, hi=1 / 3)) == "[4, 3]|float32|14|-0.1|0.3333333333333333|3|2"


def test_a_finding_is_identified_by_path_graph_tensor_code_and_occurrence(tmp_path):
    located = list(located_findings(report(layer("w", (F101,)))))
    [item] = located
    assert item.fingerprint(tmp_path) == sha(os.path.relpath(os.path.abspath("models/net.onnx"), tmp_path),
                                             "main", "w", "IA101", "0")
    root = os.getcwd()  # the report's path is relative to it already
    assert item.fingerprint(root) == item.fingerprint() == sha("models/net.onnx", "main", "w", "IA101", "0")
    assert item.content_fingerprint(root) == sha("models/net.onnx", "content", "[4, 3]|float32|14|-0.5|0.25|3|2",
                                                 "IA101", "0")
    assert item.path(root) == "models/net.onnx" and item.position == (0, 0, 0)


def test_fingerprints_do_not_depend_on_the_position_of_a_finding_or_a_layer():
    before = report(layer("a", (F204,)), layer("w", (F204, F101)))
    after = report(layer("w", (F101,)))  # layer a gone, w's IA204 fixed: IA101 is now first of the first layer
    [old] = [i for i in located_findings(before) if i.finding.code == "IA101"]
    [new] = list(located_findings(after))
    assert old.position == (0, 1, 1) and new.position == (0, 0, 0)
    assert old.fingerprint(".") == new.fingerprint(".")
    assert old.content_fingerprint(".") == new.content_fingerprint(".")


def test_two_findings_of_one_code_in_a_layer_are_told_apart_by_occurrence():
    twice = (F101, F204, Finding("IA101", "fail", "part k"))
    items = list(located_findings(report(layer("w", twice))))
    assert [(i.finding.code, i.occurrence, i.position) for i in items] == [
        ("IA101", 0, (0, 0, 0)), ("IA204", 0, (0, 0, 1)), ("IA101", 1, (0, 0, 2))]
    assert len({i.fingerprint(".") for i in items}) == 3
    assert items[2].fingerprint(".") == sha("models/net.onnx", "main", "w", "IA101", "1")


def test_graph_tensor_and_path_each_change_the_fingerprint_content_ignores_the_name():
    base = next(located_findings(report(layer("w", (F101,)))))
    renamed = next(located_findings(report(layer("v", (F101,)))))
    other_graph = next(located_findings(report(layer("w", (F101,), graph="body"))))
    other_model = next(located_findings(report(layer("w", (F101,)), path="models/other.onnx")))
    other_shape = next(located_findings(report(layer("w", (F101,), shape=(3, 4)))))
    assert len({x.fingerprint(".") for x in (base, renamed, other_graph, other_model)}) == 4
    assert renamed.content_fingerprint(".") == base.content_fingerprint(".") == other_graph.content_fingerprint(".")
    assert other_shape.content_fingerprint(".") != base.content_fingerprint(".")
    assert other_shape.fingerprint(".") == base.fingerprint(".")


def test_model_level_findings_come_first_with_no_layer():
    items = list(located_findings(report(layer("w", (F101,)), model_findings=(F501, F204))))
    assert [(i.layer_index, i.finding_index, i.finding.code) for i in items] == [
        (-1, 0, "IA501"), (-1, 1, "IA204"), (0, 0, "IA101")]
    assert items[0].layer is None
    assert items[0].fingerprint(".") == sha("models/net.onnx", "", "", "IA501", "0")
    assert items[0].content_fingerprint(".") == sha("models/net.onnx", "content", "", "IA501", "0")


def test_every_model_of_a_batch_is_numbered():
    two = Report((report(layer("w", (F101,))).models[0], report(layer("w", (F204,)), path="b.onnx").models[0]))
    assert [(i.model_index, i.path(".")) for i in located_findings(two)] == [(0, "models/net.onnx"), (1, "b.onnx")]


def test_unreadable_model_and_file_uri(tmp_path):
    model = ModelReport(str(tmp_path / "bad.onnx"), 0, "", 0, "xavier", "connectivity", "init", (), error="truncated")
    assert unreadable_fingerprint(model, tmp_path) == sha("bad.onnx", "", "", "IA001", "0")
    assert file_uri(str(tmp_path / "a b.onnx")) == (tmp_path / "a b.onnx").as_uri()
    assert file_uri("x.onnx") == Path(os.path.abspath("x.onnx")).as_uri()


@pytest.mark.parametrize("name", ["w", "ünïcode/weight", "a\x1fb"])
def test_names_are_hashed_as_utf8(name):
    item = next(located_findings(report(layer(name, (F101,)))))
    assert item.fingerprint(".") == sha("models/net.onnx", "main", name, "IA101", "0")
