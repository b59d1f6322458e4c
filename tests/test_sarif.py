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
    most 10) with a non-empty artifactLocation.uri relative to the repository root and a region.startLine,
    partialFingerprints to avoid duplicate alerts. Limits: 20 runs per file, 25,000 results and 25,000
    rules per run, 20 tags per rule, 10 MB gzipped per upload. A rule's properties.precision is one of
    very-high, high, medium, low; helpUri and informationUri are absolute https URIs; a uriBaseId is
    defined in originalUriBaseIds by an absolute URI ending in a slash (SARIF 3.14.14); a run's
    automationDetails.id, when present, is a non-empty string (its category: up to the last slash).
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
        if "automationDetails" in run and not str(run["automationDetails"].get("id", "")).strip():
            problems.append("automationDetails.id empty")
        for uri in (driver.get("informationUri"), *(r.get("helpUri") for r in rules.values())):
            if uri is not None and not str(uri).startswith("https://"):
                problems.append(f"{uri!r} is not an absolute https URI")
        bases = run.get("originalUriBaseIds", {})
        for base, where in bases.items():
            if not re.match(r"^[a-z][a-z0-9+.-]*://", where.get("uri", "")) or not where["uri"].endswith("/"):
                problems.append(f"originalUriBaseIds {base}: {where!r} is not an absolute URI ending in /")
        for rule in rules.values():
            if rule.get("properties", {}).get("precision", "high") not in ("very-high", "high", "medium", "low"):
                problems.append(f"rule {rule['id']}: precision {rule['properties']['precision']!r}")
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
                artifact = physical.get("artifactLocation", {})
                uri = artifact.get("uri", "")
                if not uri or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", uri):
                    problems.append(f"{where}: artifactLocation.uri {uri!r} is not a relative URI")
                if uri.startswith("/") or uri.startswith(".."):
                    problems.append(f"{where}: uri {uri!r} is not inside its base")
                if "uriBaseId" in artifact and artifact["uriBaseId"] not in bases:
                    problems.append(f"{where}: uriBaseId {artifact['uriBaseId']!r} not in originalUriBaseIds")
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
        assert rule["help"]["markdown"].startswith(f"**{rule['id']}")


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


def test_a_model_outside_the_working_directory_is_relative_to_a_base_id_of_its_own(repo):
    """Not an absolute file:// URI (code scanning cannot place one, and it names the machine's folders):
    the file name under MODELDIR1, which originalUriBaseIds resolves to the model's folder."""
    outside = repo.parent / "other place" / "elsewhere.onnx"
    outside.parent.mkdir()
    shutil.copy(SAMPLES / "lenet_torch_default.onnx", outside)
    log = _sarif([outside, "models/lenet_dead_layer.onnx"])
    run = log["runs"][0]
    locations = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]: r["locations"][0]
                 for r in run["results"]}
    assert set(locations) == {"elsewhere.onnx", "models/lenet_dead_layer.onnx"}
    artifact = locations["elsewhere.onnx"]["physicalLocation"]["artifactLocation"]
    assert artifact["uriBaseId"] == "MODELDIR1"
    assert run["originalUriBaseIds"]["MODELDIR1"] == {"uri": (repo.parent / "other place").as_uri() + "/"}
    assert run["originalUriBaseIds"]["MODELDIR1"]["uri"].endswith("/other%20place/")
    assert locations["models/lenet_dead_layer.onnx"]["physicalLocation"]["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
    assert "file://" not in json.dumps(run["results"]) + json.dumps(run["artifacts"])
    assert _schema_errors(log) == [] and github_problems(log) == []


def upload_sarif_category(log: dict, category: str) -> dict:
    """What github/codeql-action/upload-sarif does with its ``category`` input (populateRunAutomationDetails):
    ``category/`` becomes a run's automationDetails.id only where the run has no automationDetails."""
    out = json.loads(json.dumps(log))
    for run in out["runs"]:
        if "automationDetails" not in run:
            run["automationDetails"] = {"id": category if category.endswith("/") else category + "/"}
    return out


def test_matrix_jobs_keep_their_own_category(repo):
    """Two matrix jobs upload the same kind of log with their own category: each gets its own analysis
    (a fixed automationDetails.id made the second overwrite the first's alerts)."""
    log = _sarif(["models"])
    assert "automationDetails" not in log["runs"][0]
    ids = {upload_sarif_category(log, job)["runs"][0]["automationDetails"]["id"] for job in ("cpu", "gpu")}
    assert ids == {"cpu/", "gpu/"}


def test_sarif_category_option_sets_automation_details_id(repo, capsys):
    from initaudit.cli.main import main

    report = initaudit.audit(["models"], jobs=1, errors="report")
    assert json.loads(render(report, "sarif", category="initaudit-gpu"))["runs"][0]["automationDetails"] == {
        "id": "initaudit-gpu/"}
    assert json.loads(render(report, "sarif", category="nightly/"))["runs"][0]["automationDetails"]["id"] == "nightly/"
    assert main(["models", "-j", "1", "-f", "sarif", "--sarif-category", "matrix-py3.12"]) == 2
    log = json.loads(capsys.readouterr().out)
    assert log["runs"][0]["automationDetails"] == {"id": "matrix-py3.12/"}
    # upload-sarif keeps an id the log already has: the option is the category
    assert upload_sarif_category(log, "other")["runs"][0]["automationDetails"]["id"] == "matrix-py3.12/"
    assert main(["models", "-j", "1", "-f", "table", "--also", "sarif:out.sarif", "--sarif-category", "x"]) == 2
    assert json.loads((repo / "out.sarif").read_text())["runs"][0]["automationDetails"]["id"] == "x/"
    assert github_problems(log) == [] and _schema_errors(log) == []


def test_no_uri_points_at_a_page_that_does_not_exist(repo, monkeypatch):
    """Unpublished, the run carries no informationUri or helpUri (each rule's help is in the file); once
    HOMEPAGE is set, informationUri is it and each helpUri its rule-code page."""
    from initaudit.report.formats import sarif

    driver = _sarif(["models"])["runs"][0]["tool"]["driver"]
    assert "informationUri" not in driver and not any("helpUri" in rule for rule in driver["rules"])
    assert all(rule["help"]["markdown"] for rule in driver["rules"])
    assert "pypi.org" not in json.dumps(driver)
    monkeypatch.setattr(sarif, "HOMEPAGE", "https://example.org/initaudit")
    driver = _sarif(["models"])["runs"][0]["tool"]["driver"]
    assert driver["informationUri"] == "https://example.org/initaudit"
    assert {rule["helpUri"] for rule in driver["rules"]} == {"https://example.org/initaudit/blob/main/docs/rules.md"}


def test_each_rule_says_how_precise_it_is(repo):
    """IA104 is an estimate (residuals, attention and pooling left out), IA403 and IA501 compare a layer with
    the rest of its model: medium; the measured facts are high."""
    from initaudit.codes import RULES
    from initaudit.report.formats.sarif import _rule

    precision = {code: _rule(code)["properties"]["precision"] for code in RULES}
    assert {code for code, p in precision.items() if p == "medium"} == {"IA104", "IA403", "IA501"}
    assert set(precision.values()) == {"high", "medium"}
    run = _sarif(["models"])["runs"][0]
    by_id = {rule["id"]: rule["properties"]["precision"] for rule in run["tool"]["driver"]["rules"]}
    assert by_id["IA104"] == "medium" and by_id["IA101"] == "high"


def test_a_path_that_is_not_a_uri_as_written_is_percent_encoded(tmp_path, monkeypatch):
    folder = tmp_path / "odd: 100% sure"
    folder.mkdir()
    shutil.copy(SAMPLES / "lenet_torch_default.onnx", folder / "a b.onnx")
    monkeypatch.chdir(tmp_path)
    log = _sarif(["odd: 100% sure"])
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in log["runs"][0]["results"]}
    assert uris == {"odd%3A%20100%25%20sure/a%20b.onnx"}
    assert github_problems(log) == [] and _schema_errors(log) == []
