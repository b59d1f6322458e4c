"""The pre-commit hook and the GitHub Action, exercised offline."""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
yaml = pytest.importorskip("yaml", reason="PyYAML comes with pre-commit (the test extra)")


def test_hook_manifest_is_valid_for_pre_commit():
    clientlib = pytest.importorskip("pre_commit.clientlib", reason="pre-commit is in the test extra")
    hooks = clientlib.load_manifest(str(ROOT / ".pre-commit-hooks.yaml"))
    (hook,) = hooks
    assert hook["id"] == "initaudit" and hook["files"] == r"\.onnx$" and hook["entry"] == "initaudit"
    assert hook["language"] == "python"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_pre_commit_runs_the_hook_on_onnx_files_only(tmp_path):
    pytest.importorskip("pre_commit", reason="pre-commit is in the test extra")
    # Offline: the manifest's hook as a `repo: local` hook, run by the initaudit of this interpreter
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / hook["entry"]
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m initaudit "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    local = {**hook, "language": "system", "entry": str(shim)}
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    _git(repo, "init", "-q")
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": [{"repo": "local", "hooks": [local]}]}))
    shutil.copy(SAMPLES / "lenet_xavier.onnx", repo / "models" / "good.onnx")
    (repo / "notes.txt").write_text("not a model\n")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"), "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def pre_commit() -> subprocess.CompletedProcess:
        _git(repo, "add", "-A")
        return subprocess.run([sys.executable, "-m", "pre_commit", "run", "--all-files", "--verbose"], cwd=repo,
                              env=env, capture_output=True, text=True, timeout=300)

    done = pre_commit()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Passed" in done.stdout and "models/good.onnx: 5 weights — 5 ok" in done.stdout
    assert "notes.txt" not in done.stdout  # files: '\.onnx$'
    shutil.copy(SAMPLES / "lenet_dead_layer.onnx", repo / "models" / "dead.onnx")
    done = pre_commit()
    assert done.returncode == 1 and "Failed" in done.stdout and "IA202" in done.stdout


def _expand(value: str, inputs: dict[str, str], action_path: Path) -> str:
    def one(match: re.Match) -> str:
        expr = match.group(1).strip()
        if expr.startswith("inputs."):
            return inputs[expr[len("inputs."):]]
        assert expr == "github.action_path", expr
        return str(action_path)
    return re.sub(r"\$\{\{(.*?)\}\}", one, value)


def test_action_steps_install_audit_and_write_sarif_and_summary(tmp_path):
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    assert all("${{" not in step["run"] for step in steps)  # expressions only via env: no script injection
    workspace = tmp_path / "workspace"
    (workspace / "models").mkdir(parents=True)
    shutil.copy(SAMPLES / "lenet_torch_default.onnx", workspace / "models" / "net.onnx")
    (workspace / "models" / "broken.onnx").write_bytes(b"not onnx")
    # python3 on PATH records the install command (the install itself needs the network); initaudit is real
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path / "pip.log"}"\n')
    (bin_dir / "initaudit").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m initaudit "$@"\n')
    for shim in bin_dir.iterdir():
        shim.chmod(0o755)
    inputs = {name: spec.get("default", "") for name, spec in action["inputs"].items()}
    inputs.update(paths="models", args="--fail-on fail")
    summary, output = tmp_path / "summary.md", tmp_path / "output.txt"
    codes = []
    for step in steps:
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output),
               **{k: _expand(str(v), inputs, ROOT) for k, v in step.get("env", {}).items()}}
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], cwd=workspace,
                              env=env, capture_output=True, text=True, timeout=300)
        codes.append(done.returncode)
        if step.get("id") == "audit":
            annotations = done.stdout
    assert (tmp_path / "pip.log").read_text().split() == ["-m", "pip", "install", "--quiet",
                                                         "--disable-pip-version-check", str(ROOT)]
    assert codes == [0, 2]  # the unreadable model makes the audit step fail with exit code 2
    assert "::error file=models/broken.onnx,title=IA001" in annotations
    assert "::error file=models/net.onnx,title=IA101" in annotations
    sarif = json.loads((workspace / "initaudit.sarif").read_text())
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in sarif["runs"][0]["results"]}
    assert uris == {"models/broken.onnx", "models/net.onnx"}
    assert "## initaudit: `models/net.onnx`" in summary.read_text()
    assert output.read_text().splitlines() == ["exit-code=2", "sarif-file=initaudit.sarif"]
