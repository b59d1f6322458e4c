"""The JSON Schema shipped in the package: printed by `initaudit schema`, and the contract reports follow.

Every JSON report rendered in this suite is validated against it (conftest.py); these tests check the
schema itself and that the validation really bites.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest

import initaudit
from initaudit.cli.main import main
from initaudit.report.formats import render
from initaudit.report.schema import schema

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
CONTRACT_LAYER_FIELDS = {"name", "node", "op", "shape", "layout", "groups", "fan_in", "fan_out", "count", "mean",
                         "std", "var", "min", "max", "excess_kurtosis", "nonfinite", "zeros", "target", "target_var",
                         "ratio", "status", "matches", "distribution", "findings"}  # design.md, schema 1


def test_schema_command_prints_the_shipped_schema(capsys):
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == schema() == json.loads((ROOT / "initaudit" / "report" / "schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(printed)


def test_required_fields_are_the_contract():
    defs = schema()["$defs"]
    assert set(defs["layer"]["required"]) == CONTRACT_LAYER_FIELDS
    assert set(defs["model_info"]["required"]) == {"path", "opset", "producer", "ir_version"}
    assert set(defs["model_report"]["required"]) == {"model", "target", "convention", "layers", "summary"}
    assert set(defs["finding"]["required"]) == {"code", "severity", "message"}


def _one_layer_report() -> dict:
    return json.loads(render(initaudit.audit(SAMPLES / "lenet_torch_default.onnx"), "json"))


def test_extensions_and_new_vocabulary_are_allowed():
    data = _one_layer_report()
    validator = jsonschema.Draft202012Validator(schema())
    layer = data["layers"][0]
    layer["matches"] = ["std:0.02", "xavier", "std:1e-3"]
    layer["review"] = {"anything": [1, 2]}  # a field another feature adds
    layer["findings"].append({"code": "IA401", "severity": "warn", "message": "m", "evidence": {"x": 1}})
    data["a_future_field"] = {"ignore": []}
    validator.validate(data)


@pytest.mark.parametrize("breakage", [
    lambda d: d["layers"][0].pop("fan_in"),
    lambda d: d["layers"][0].update(status="bad"),
    lambda d: d["layers"][0].update(matches=["std:abc"]),
    lambda d: d["layers"][0]["findings"].append({"code": "X1", "severity": "fail", "message": ""}),
    lambda d: d["model"].pop("opset"),
    lambda d: d.update(schema=2),
    lambda d: d.update(policy={"kind": "bogus", "value": "std:0.02", "count": 3, "of": 4, "layers": []}),
    lambda d: d["layers"][0].update(review={"dead_indices": ["first"]}),
    lambda d: d["summary"].pop("fail"),
])
def test_schema_rejects_a_broken_report(breakage):
    data = _one_layer_report()
    breakage(data)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema(), cls=jsonschema.Draft202012Validator)


def test_the_suite_wide_validation_bites():
    report = initaudit.audit(SAMPLES / "lenet_xavier.onnx")
    model = report.models[0]
    broken = dataclasses.replace(model, layers=(dataclasses.replace(model.layers[0], matches=("Not A Rule",)),))
    with pytest.raises(jsonschema.ValidationError):
        render(dataclasses.replace(report, models=(broken,)), "json")


def test_several_models_and_an_unreadable_one_validate(tmp_path, capsys):
    (tmp_path / "bad.onnx").write_bytes(b"nope")
    code = main([str(SAMPLES / "lenet_xavier.onnx"), str(tmp_path / "bad.onnx"), "--format", "json", "-j", "1"])
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, schema(), cls=jsonschema.Draft202012Validator)
    assert code == 2 and data["models"][1]["status"] == "error"


def test_docs_point_to_the_shipped_schema():
    text = (ROOT / "docs" / "json-report.md").read_text(encoding="utf-8")
    assert "initaudit schema" in text and "initaudit/report/schema.json" in text
    assert "design document" not in text
    assert "docs/json-report.md" in (ROOT / "README.md").read_text(encoding="utf-8")
