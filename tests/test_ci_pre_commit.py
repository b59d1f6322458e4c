"""The pre-commit hook (.pre-commit-hooks.yaml): its file pattern, a commit that changes only a model's
external data, and the hook installed and run by ``pre-commit try-repo`` as a user would."""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from modelkit import model, tensor, xavier_uniform
from onnx import helper

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
yaml = pytest.importorskip("yaml", reason="PyYAML comes with pre-commit (the test extra)")
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _hook() -> dict:
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    return hook


def test_hook_manifest_is_valid_for_pre_commit():
    clientlib = pytest.importorskip("pre_commit.clientlib", reason="pre-commit is in the test extra")
    (hook,) = clientlib.load_manifest(str(ROOT / ".pre-commit-hooks.yaml"))
    assert hook["id"] == "initaudit" and hook["entry"] == "initaudit" and hook["language"] == "python"
    assert hook["require_serial"] is True


@pytest.mark.parametrize("name,matched", [
    ("model.onnx", True), ("models/enc.onnx", True),
    ("model.onnx.data", True), ("models/enc.onnx_data", True),       # torch.onnx / optimum external data
    ("model.onnx.bak", False), ("notes.txt", False), ("onnx.py", False), ("model.onnxdata", False),
])
def test_hook_files_pattern_takes_models_and_their_external_data(name, matched):
    # pre-commit matches `files` with re.search on the path, forward slashes
    assert bool(re.search(_hook()["files"], name)) is matched


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def _external_model(folder: Path, name: str = "model.onnx") -> Path:
    """A LeNet-sized MLP whose weights (Xavier) live in ``<name>.data``, as torch.onnx writes large models."""
    rng = np.random.default_rng(7)
    w1 = xavier_uniform(rng, (64, 128), 64, 128)
    w2 = xavier_uniform(rng, (128, 32), 128, 32)
    m = model([helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
               helper.make_node("MatMul", ["r", "w2"], ["y"])], [tensor("w1", w1), tensor("w2", w2)])
    path = folder / name
    onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=name + ".data", size_threshold=0)
    return path


def _repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    _git(repo, "init", "-q")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"), "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return repo, env


def _zero_the_data(model_path: Path) -> None:
    data = Path(str(model_path) + ".data")
    data.write_bytes(b"\0" * data.stat().st_size)  # same size, every weight zero: IA202


@needs_git
def test_a_commit_that_changes_only_external_data_runs_the_hook(tmp_path):
    """The manifest's hook as a `repo: local` hook (no install, offline), run by the initaudit of this
    interpreter: a commit of only model.onnx.data is audited as model.onnx, and fails on IA202."""
    pytest.importorskip("pre_commit", reason="pre-commit is in the test extra")
    hook = _hook()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / hook["entry"]
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m initaudit "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    repo, env = _repo(tmp_path)
    local = {**hook, "language": "system", "entry": str(shim)}
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": [{"repo": "local", "hooks": [local]}]}))
    model_path = _external_model(repo / "models")
    shutil.copy(SAMPLES / "lenet_xavier.onnx", repo / "models" / "good.onnx")
    (repo / "notes.txt").write_text("not a model\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "models")

    def pre_commit() -> subprocess.CompletedProcess:
        _git(repo, "add", "-A")
        return subprocess.run([sys.executable, "-m", "pre_commit", "run", "--verbose"], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=300)

    (repo / "notes.txt").write_text("still not a model\n")
    done = pre_commit()
    assert done.returncode == 0 and "(no files to check)Skipped" in done.stdout, done.stdout
    _zero_the_data(model_path)
    done = pre_commit()
    assert done.returncode == 1 and "Failed" in done.stdout, done.stdout + done.stderr
    assert "models/model.onnx: 2 weights — 0 ok, 0 warn, 2 fail" in done.stdout
    assert "IA202" in done.stdout and "good.onnx" not in done.stdout  # only the model whose data changed
    assert "IA001" not in done.stdout  # the data file is not read as a model of its own


def _commit_is_repo() -> bool:
    return shutil.which("git") is not None and subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--git-dir"], capture_output=True).returncode == 0


OFFLINE = re.compile(r"No matching distribution found|Could not find a version that satisfies|"
                     r"Failed to establish a new connection|Temporary failure in name resolution")


@pytest.mark.skipif(not _commit_is_repo(), reason="try-repo needs this project as a git checkout, and git")
def test_try_repo_runs_the_published_hook_on_an_external_data_only_commit(tmp_path):
    """`pre-commit try-repo` installs the hook from this repository (its working tree, uncommitted changes
    included) as a user's `repo:` entry would, and runs it on a commit that changes only model.onnx.data.
    The hook's environment installs initaudit's dependencies from the package index (about a minute)."""
    pytest.importorskip("pre_commit", reason="pre-commit is in the test extra")
    repo, env = _repo(tmp_path)
    model_path = _external_model(repo / "models")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "a model with external data")
    _zero_the_data(model_path)
    _git(repo, "add", "-A")
    staged = subprocess.run(["git", "-C", str(repo), "diff", "--cached", "--name-only"], capture_output=True,
                            text=True, check=True).stdout.split()
    assert staged == ["models/model.onnx.data"]
    done = subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", str(ROOT), "initaudit", "--verbose"],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode not in (0, 1) and OFFLINE.search(done.stdout + done.stderr):
        pytest.skip("the package index is out of reach: the hook's environment cannot be installed")
    assert "(no files to check)" not in done.stdout, done.stdout
    assert done.returncode == 1 and "Failed" in done.stdout, done.stdout + done.stderr
    assert "models/model.onnx: 2 weights — 0 ok, 0 warn, 2 fail" in done.stdout and "IA202" in done.stdout
