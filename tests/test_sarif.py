"""SARIF for GitHub code scanning: the 2.1.0 schema, GitHub's documented upload requirements, stable
fingerprints, relative locations, unreadable models, the 25,000-result limit."""
from __future__ import annotations

import dataclasses
import gzip
import json
import re
import shutil
from pathlib import Path

import jsonschema
import pytest
from goldens import check_golden

import initaudit
from initaudit.findings import Finding
from initaudit.report.formats import render

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
SARIF_SCHEMA = json.loads((ROOT / "tests" / "fixtures" / "sarif-schema-2.1.0.json").read_text())


def github_problems(log: dict) -> list[str]:
    """What GitHub's "SARIF support for code scanning" page requires of an upload, and its limits.

    Required: version 2.1.0, runs, tool.driver.name, per rule an id with shortDescription, fullDescription
    and help text, per result a ruleId, a message.text, a level among note/warning/error, locations (at
    most 10) with a non-empty artifactLocation.uri relative to the repository root (or file://) and a
    region.startLine, partialFingerprints to avoid duplicate alerts. Limits: 20 runs per file, 25,000
    results and 25,000 rules per run, 20 tags per rule, 10 MB gzipped per upload.
    """
    problems = []
    if log.get("version") != "2.1.0":
        problems.append("version is not 2.1.0")
    runs = log.get("runs", [])
    if not isinstance(runs, list) or len(runs) > 20:
        problems.append("runs missing or more than 20")
    for run in runs:
        driver = run.get("tool", {}).get("driver", {})
        if not driver.get("name"):
            problems.append("tool.driver.name missing")
        rules = {r["id"]: r for r in driver.get("rules", [])}
        if len(rules) > 25_000 or len(run.get("results", [])) > 25_000:
            problems.append("more than 25,000 rules or results")
        for rule in rules.values():
            for key in ("shortDescription", "fullDescription", "help"):
                if not rule.get(key, {}).get("text", "").strip():
                    problems.append(f"rule {rule['id']}: {key}.text missing")
            if len(rule.get("properties", {}).get("tags", [])) > 20:
                problems.append(f"rule {rule['id']}: more than 20 tags")
            if rule.get("defaultConfiguration", {}).get("level", "warning") not in ("note", "warning", "error"):
                problems.append(f"rule {rule['id']}: bad default level")
        for i, result in enumerate(run.get("results", [])):
            where = f"result {i}"
            if result.get("ruleId") not in rules:
                problems.append(f"{where}: ruleId missing or not among the rules")
            if result.get("level") not in ("note", "warning", "error"):
                problems.append(f"{where}: level {result.get('level')!r}")
            if not result.get("message", {}).get("text", "").strip():
                problems.append(f"{where}: message.text missing")
            fingerprints = result.get("partialFingerprints", {})
            if not fingerprints or not all(isinstance(v, str) and v for v in fingerprints.values()):
                problems.append(f"{where}: partialFingerprints missing")
            locations = result.get("locations", [])
            if not 1 <= len(locations) <= 10:
                problems.append(f"{where}: {len(locations)} locations")
            for location in locations:
                physical = location.get("physicalLocation", {})
                uri = physical.get("artifactLocation", {}).get("uri", "")
                if not uri or (re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", uri) and not uri.startswith("file://")):
                    problems.append(f"{where}: artifactLocation.uri {uri!r}")
                if not uri.startswith("file://") and (uri.startswith("/") or uri.startswith("..")):
                    problems.append(f"{where}: uri {uri!r} is not inside the repository")
                if physical.get("region", {}).get("startLine", 0) < 1:
                    problems.append(f"{where}: region.startLine missing")
    if len(gzip.compress(json.dumps(log).encode())) > 10 * 1024 * 1024:
        problems.append("larger than 10 MB gzipped")
    return problems


def _schema_errors(log: dict) -> list[str]:
    validator = jsonschema.Draft4Validator(SARIF_SCHEMA)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(log)]


@pytest.fixture()
def repo(tmp_path, monkeypatch):
    """A repository checkout with models in a subfolder, as the working directory."""
    models = tmp_path / "checkout" / "models"
    models.mkdir(parents=True)
    for name in ("lenet_torch_default.onnx", "lenet_dead_layer.onnx"):
        shutil.copy(SAMPLES / name, models / name)
    (models / "truncated.onnx").write_bytes((SAMPLES / "lenet_xavier.onnx").read_bytes()[:4000])
    monkeypatch.chdir(tmp_path / "checkout")
    return tmp_path / "checkout"


def _sarif(paths, **options) -> dict:
    return json.loads(render(initaudit.audit(paths, jobs=1, errors="report", **options), "sarif"))


def test_valid_sarif_that_github_accepts(repo):
    log = _sarif(["models"])
    assert _schema_errors(log) == []
    assert github_problems(log) == []
    run = log["runs"][0]
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} == {"IA001", "IA101", "IA102", "IA104", "IA202"}
    for rule in run["tool"]["driver"]["rules"]:
        assert rule["helpUri"].startswith("https://") and rule["help"]["markdown"].startswith(f"**{rule['id']}")


def test_locations_are_relative_with_a_base_id(repo):
    run = _sarif(["models"])["runs"][0]
    uris = {loc["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"] for loc in r["locations"]}
    assert uris == {"models/lenet_torch_default.onnx", "models/lenet_dead_layer.onnx", "models/truncated.onnx"}
    for result in run["results"]:
        artifact = result["locations"][0]["physicalLocation"]["artifactLocation"]
        assert artifact["uriBaseId"] == "%SRCROOT%"
        assert run["artifacts"][artifact["index"]]["location"]["uri"] == artifact["uri"]
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == repo.as_uri() + "/"
    text = json.dumps(run["results"])
    assert str(repo) not in text  # nothing machine-specific in the results


def test_logical_locations_name_graph_node_and_tensor(repo):
    run = _sarif(["models/lenet_torch_default.onnx"])["runs"][0]
    fc1 = next(r for r in run["results"] if r["message"]["text"].startswith("fc1.weight"))
    kinds = {loc["kind"]: loc for loc in fc1["locations"][0]["logicalLocations"]}
    assert kinds["namespace"]["name"] == "main"
    assert kinds["function"]["fullyQualifiedName"] == "main/" + kinds["function"]["name"] and kinds["function"]["name"]
    assert kinds["variable"]["fullyQualifiedName"] == "main::fc1.weight"
    assert fc1["ruleId"] == "IA101" and fc1["level"] == "error"


def test_unreadable_model_is_a_result(repo):
    run = _sarif(["models"])["runs"][0]
    bad = [r for r in run["results"] if r["ruleId"] == "IA001"]
    assert len(bad) == 1 and bad[0]["level"] == "error"
    assert bad[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "models/truncated.onnx"
    assert "could not be read" in bad[0]["message"]["text"]


def test_fingerprints_are_stable_across_runs_and_machines(repo, tmp_path, monkeypatch):
    def fingerprints(log):
        return [(r["ruleId"], r["message"]["text"], r["partialFingerprints"]) for r in log["runs"][0]["results"]]

    first = fingerprints(_sarif(["models"]))
    assert fingerprints(_sarif(["models"])) == first
    assert fingerprints(_sarif([repo / "models"])) == first  # absolute argument, same working directory
    other = tmp_path / "elsewhere" / "clone"  # another machine: another checkout folder
    shutil.copytree(repo, other)
    monkeypatch.chdir(other)
    assert fingerprints(_sarif(["models"])) == first
    values = [list(f.values())[0] for _, _, f in first]
    assert len(set(values)) == len(values)  # one alert per finding


def test_fingerprints_do_not_depend_on_node_names_or_messages(repo):
    report = initaudit.audit("models/lenet_torch_default.onnx")
    model = report.models[0]
    renamed = dataclasses.replace(model, layers=tuple(
        dataclasses.replace(layer, node=f"/renumbered_{i}/Conv",
                            findings=tuple(dataclasses.replace(f, message=f.message + " 1.234") for f in layer.findings))
        for i, layer in enumerate(model.layers)))
    a = json.loads(render(report, "sarif"))["runs"][0]["results"]
    b = json.loads(render(dataclasses.replace(report, models=(renamed,)), "sarif"))["runs"][0]["results"]
    assert [r["partialFingerprints"] for r in a] == [r["partialFingerprints"] for r in b]


def test_at_most_25000_results_most_severe_kept(repo):
    report = initaudit.audit("models/lenet_torch_default.onnx")
    model = report.models[0]
    template = model.layers[0]
    notes = [dataclasses.replace(template, name=f"t{i}", findings=(Finding("IA303", "info", "n"),))
             for i in range(25_003)]
    big = dataclasses.replace(model, layers=(*notes, *model.layers))
    log = json.loads(render(dataclasses.replace(report, models=(big,)), "sarif"))
    run = log["runs"][0]
    assert len(run["results"]) == 25_000
    levels = [r["level"] for r in run["results"]]
    assert levels.count("error") == 4 and levels.count("warning") == 2  # every error and warning kept
    note = run["invocations"][0]["toolExecutionNotifications"][0]["message"]["text"]
    assert note.startswith(f"{25_003 + 6 - 25_000} less severe results were left out")
    assert github_problems(log) == []
    run["results"] = run["results"][:50] + run["results"][-50:]  # the schema, on a sample (25,000 take a minute)
    assert _schema_errors(log) == []


def _scrub(log: dict) -> dict:
    run = log["runs"][0]
    run["originalUriBaseIds"]["%SRCROOT%"]["uri"] = "file:///CHECKOUT/"
    run["tool"]["driver"]["version"] = run["tool"]["driver"]["semanticVersion"] = "VERSION"
    return log


def test_golden_sarif(repo):
    log = _scrub(_sarif(["models/lenet_torch_default.onnx", "models/truncated.onnx"]))
    check_golden("lenet_torch_default.sarif", json.dumps(log, indent=2, ensure_ascii=False) + "\n")


def test_a_model_outside_the_working_directory_gets_an_absolute_file_uri(repo):
    outside = repo.parent / "elsewhere.onnx"
    shutil.copy(SAMPLES / "lenet_torch_default.onnx", outside)
    log = _sarif([outside])
    artifact = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert artifact["uri"] == outside.as_uri() and "uriBaseId" not in artifact  # never resolved against the checkout
    assert _schema_errors(log) == []
