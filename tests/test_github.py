"""``--format github``: workflow commands GitHub parses, capped per level, and the step summary."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from modelkit import model, save, tensor
from onnx import helper

import initaudit
from initaudit.cli.main import main
from initaudit.findings import Finding
from initaudit.report.formats import render
from initaudit.report.formats.github import escape_data, escape_property

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
COMMAND = re.compile(r"^::(error|warning|notice) file=([^,:]*),title=([^,:]*)::(.*)$")


def _unescape(text: str) -> str:  # what the Actions runner does with a command's data and properties
    return (text.replace("%0D", "\r").replace("%0A", "\n").replace("%3A", ":").replace("%2C", ",")
            .replace("%25", "%"))


def test_escaping_follows_the_actions_toolkit():
    # toolkit: data escapes % CR LF; properties also : and , ; % first so nothing is escaped twice
    assert escape_data("50% done\r\nnext: a,b") == "50%25 done%0D%0Anext: a,b"
    assert escape_property("dir:a,b/50%.onnx\n") == "dir%3Aa%2Cb/50%25.onnx%0A"
    assert escape_data("%0A") == "%250A"


def test_annotations_parse_and_round_trip(tmp_path, monkeypatch):
    folder = tmp_path / "odd, name: 100%"
    folder.mkdir()
    name = "w,eird:\nname%"
    rng = np.random.default_rng(0)
    m = model([helper.make_node("MatMul", ["x", name], ["y"])], [tensor(name, rng.normal(0, 1, (64, 32)).astype(np.float32))])
    save(m, folder)
    monkeypatch.chdir(tmp_path)
    text = render(initaudit.audit(folder / "model.onnx"), "github")
    commands = [COMMAND.match(line) for line in text.splitlines() if line.startswith("::")]
    assert commands and all(commands)
    level, file, title, message = commands[0].groups()
    assert level == "error" and _unescape(file) == "odd, name: 100%/model.onnx"
    assert _unescape(title) == f"IA101 variance-far-from-target: {name}"
    assert _unescape(message).startswith(f"{name}: variance ")


def _many_findings_report():
    report = initaudit.audit(SAMPLES / "lenet_torch_default.onnx")
    m = report.models[0]
    layers = [dataclasses.replace(m.layers[0], name=f"fail{i}", findings=(Finding("IA101", "fail", "x"),))
              for i in range(13)]
    layers += [dataclasses.replace(m.layers[0], name=f"warn{i}", findings=(Finding("IA102", "warn", "y"),))
               for i in range(11)]
    layers += [dataclasses.replace(m.layers[0], name=f"info{i}", findings=(Finding("IA303", "info", "z"),))
               for i in range(3)]
    return dataclasses.replace(report, models=(dataclasses.replace(m, layers=tuple(reversed(layers)), findings=()),))


def test_most_severe_first_ten_per_level_and_a_count_of_the_rest():
    report = _many_findings_report()
    lines = render(report, "github").splitlines()
    levels = [line[2:].split(" ", 1)[0] for line in lines if line.startswith("::")]
    assert levels == ["error"] * 10 + ["warning"] * 10 + ["notice"] * 3
    rest = [line for line in lines if "not annotated" in line]
    assert rest == ["initaudit: 3 more errors, 1 more warning not annotated (GitHub shows 10 per level and step); "
                    "the step summary and the other formats list them all"]


def test_unreadable_model_is_an_error_annotation(tmp_path, monkeypatch):
    (tmp_path / "bad.onnx").write_bytes(b"junk")
    shutil.copy(SAMPLES / "lenet_xavier.onnx", tmp_path / "good.onnx")
    monkeypatch.chdir(tmp_path)
    text = render(initaudit.audit(["good.onnx", "bad.onnx"], jobs=1, errors="report"), "github")
    assert text.startswith("::error file=bad.onnx,title=IA001 unreadable-model::could not be read: ")
    assert "good.onnx: 5 weights — 5 ok" in text


@pytest.mark.parametrize("with_summary", [True, False])
def test_step_summary_gets_the_markdown_report(tmp_path, monkeypatch, capsys, with_summary):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    if with_summary:
        monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    else:
        monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    code = main([str(SAMPLES / "lenet_torch_default.onnx"), "--format", "github"])
    out = capsys.readouterr().out
    assert code == 1 and out.count("::error ") == 4 and out.count("::warning ") == 2
    written = summary.read_text()
    if with_summary:
        assert written.startswith("earlier step\n## initaudit: `") and "**FAIL**" in written
        markdown = render(initaudit.audit(SAMPLES / "lenet_torch_default.onnx"), "markdown")
        assert written == "earlier step\n" + markdown
    else:
        assert written == "earlier step\n"


def test_annotation_counts_match_the_json_report(capsys):
    main([str(SAMPLES), "--format", "json", "-j", "1"])
    data = json.loads(capsys.readouterr().out)
    severities = [f["severity"] for m in data["models"] for f in m["findings"]]
    severities += [f["severity"] for m in data["models"] for layer in m["layers"] for f in layer["findings"]]
    main([str(SAMPLES), "--format", "github", "-j", "1"])
    out = capsys.readouterr().out
    assert out.count("::error ") == min(10, severities.count("fail"))
    assert out.count("::warning ") == min(10, severities.count("warn"))


def test_gitlab_code_quality_report(tmp_path, monkeypatch):
    """GitLab's documented fields: description, check_name, unique fingerprint, severity, location.path/lines.begin."""
    (tmp_path / "m").mkdir()
    shutil.copy(SAMPLES / "lenet_torch_default.onnx", tmp_path / "m" / "net.onnx")
    (tmp_path / "m" / "bad.onnx").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    issues = json.loads(render(initaudit.audit("m", jobs=1, errors="report"), "codequality"))
    assert len(issues) == 1 + 6  # the unreadable model, then 4 IA101, 1 IA102, 1 IA104
    for issue in issues:
        assert issue["description"] and issue["check_name"]
        assert issue["severity"] in ("info", "minor", "major", "critical", "blocker")
        assert issue["location"]["path"] in ("m/net.onnx", "m/bad.onnx") and issue["location"]["lines"]["begin"] == 1
    assert len({i["fingerprint"] for i in issues}) == len(issues)
    assert [i["severity"] for i in issues].count("major") == 4 and issues[0]["check_name"].startswith("IA001")


#: The commands the Actions runner registers (its command extensions, and stop-commands).
REGISTERED = {"set-env", "set-output", "save-state", "add-mask", "add-path", "add-matcher", "remove-matcher", "debug",
              "warning", "error", "notice", "group", "endgroup", "echo", "stop-commands"}


def runner_commands(output: str) -> list[tuple[str, dict[str, str], str]]:
    """What the Actions runner reads as workflow commands in a step's output (its ActionCommand parsers):
    a line (split on CR, LF or CRLF) that, leading whitespace trimmed, starts with ``::NAME`` and holds
    another ``::``; else the legacy form, ``##[NAME`` anywhere in the line up to a ``]``. Only registered
    names count. Returns (name, properties, data), unescaped as the runner does."""
    found = []
    for line in re.split(r"\r\n|\r|\n", output):
        trimmed = line.lstrip()  # Python's whitespace is a superset of .NET's: errs towards finding more
        if trimmed.startswith("::") and trimmed.find("::", 2) >= 0:
            end = trimmed.find("::", 2)
            info = trimmed[2:end]
            name, _, props = info.partition(" ")
            if name in REGISTERED:
                pairs = [p.split("=", 1) for p in props.strip().split(",") if "=" in p]
                found.append((name, {k: _unescape(v) for k, v in pairs}, _unescape(trimmed[end + 2:])))
                continue
        start = line.find("##[")
        if start >= 0 and line.find("]", start) >= 0:
            info = line[start + 3:line.find("]", start)]
            name = info.split(" ", 1)[0]
            if name in REGISTERED:
                found.append((name, {}, line[line.find("]", start) + 1:]))
    return found


HOSTILE_FILES = ["evil\n::error file=x.onnx::injected.onnx", "::add-mask::secret.onnx", "x ##[error]legacy.onnx",
                 "a\r::stop-commands::tok.onnx", "%0A::notice::escaped.onnx"]
HOSTILE_TENSORS = ["w\n::error file=a::injected", "##[stop-commands]tok", "t\r\n::set-output name=a::b",
                   "  ::warning::spaced", "%0D%0A::error::pre-escaped"]


def _hostile_models(folder: Path) -> list[Path]:
    """One model per hostile file name, each with two hostile tensor names (one failing weight, one at 0.65×
    its target: a warning), and an unreadable one with a hostile name (its error message carries the path)."""
    rng = np.random.default_rng(3)
    paths = []
    for i, name in enumerate(HOSTILE_FILES[:-1]):
        names = [HOSTILE_TENSORS[i], HOSTILE_TENSORS[i + 1]]
        values = [rng.normal(0, 1, (64, 32)), rng.normal(0, (0.65 * 2 / (64 + 32)) ** 0.5, (64, 32))]
        tensors = [tensor(t, v.astype(np.float32)) for t, v in zip(names, values)]
        nodes = [helper.make_node("MatMul", ["x", t], [f"y{j}"], name=t) for j, t in enumerate(names)]
        paths.append(save(model(nodes, tensors, outputs=["y0", "y1"]), folder, name))
    (folder / HOSTILE_FILES[-1]).write_bytes(b"not onnx")
    paths.append(folder / HOSTILE_FILES[-1])
    return paths


def test_no_file_or_tensor_name_makes_a_workflow_command(tmp_path, monkeypatch, capsys):
    """Every command the runner would read in the log is one of our annotations, for a real model of this
    run, with the level we meant; the plain lines (summaries) and stderr hold none at all."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    paths = _hostile_models(tmp_path)
    assert main([*map(str, paths), "-f", "github", "-j", "1"]) == 2
    captured = capsys.readouterr()
    commands = runner_commands(captured.out)
    assert sorted(name for name, _, _ in commands) == ["error"] * 5 + ["warning"] * 4
    assert {props["file"] for _, props, _ in commands} == set(HOSTILE_FILES)  # each a real model's path
    for _, props, _ in commands:
        assert set(props) == {"file", "title"} and props["title"].startswith("IA")
    lines = re.split(r"\r\n|\r|\n", captured.out.rstrip("\n"))
    assert len(lines) == len(commands) + len(paths)  # an annotation a line, then one summary per model
    plain = lines[len(commands):]
    assert all(line.startswith("initaudit: ") for line in plain)
    assert runner_commands("\n".join(plain)) == [] and runner_commands(captured.err) == []
    assert captured.err.count("\n") == 1 and captured.err.startswith("initaudit: error: ")
    # names arrive whole: the tensor names in the titles, the unreadable model's path in its IA001
    titles = {props["title"].split(": ", 1)[1] for _, props, _ in commands if not props["title"].startswith("IA001")}
    assert titles == set(HOSTILE_TENSORS)
    assert [props["file"] for name, props, _ in commands if props["title"].startswith("IA001")] == [HOSTILE_FILES[-1]]


def test_the_count_and_baseline_lines_are_plain_lines_too():
    report = _many_findings_report()
    m = report.models[0]
    hostile = dataclasses.replace(m, path="evil\n::error::x.onnx")
    text = render(dataclasses.replace(report, models=(hostile,)), "github")
    names = [name for name, _, _ in runner_commands(text)]
    assert names == ["error"] * 10 + ["warning"] * 10 + ["notice"] * 3
    assert "initaudit: evil%0A::error::x.onnx: 27 weights" in text


def test_plain_and_one_line_escape_what_the_runner_reads():
    from initaudit.report.formats.github import one_line, plain

    assert plain("a\nb%c\r##[error]d") == "initaudit: a%0Ab%25c%0D##%5Berror]d"
    assert one_line("a\nb\r\tc\x1b[31m ##[x]") == "a\\nb\\r\\tc\\x1b[31m ##\\[x]"
    assert runner_commands("x ##[error]y") == [("error", {}, "y")]  # the legacy form is read mid-line
    assert runner_commands("  ::warning file=a::b") == [("warning", {"file": "a"}, "b")]
