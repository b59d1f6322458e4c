"""The README's CI snippets are valid YAML and their initaudit commands run as written."""
from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from initaudit.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
yaml = pytest.importorskip("yaml", reason="PyYAML comes with pre-commit (the test extra)")
BLOCKS = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def _commands(block: str) -> list[str]:
    return [line.split("run: ", 1)[-1].lstrip("- ").strip() for line in block.splitlines()
            if re.match(r"^\s*(- run: |- )?initaudit ", line.strip()) or "run: initaudit " in line]


def test_snippets_parse():
    assert len(BLOCKS) >= 5
    for block in BLOCKS:
        if block.lstrip().startswith("[tool"):
            continue
        text = block if not block.startswith("      - uses") else "steps:\n" + block
        assert yaml.safe_load(text) is not None


def test_snippet_commands_run_on_sample_models(tmp_path, monkeypatch, capsys):
    (tmp_path / "models").mkdir()
    for sample in (ROOT / "sample_models").glob("*.onnx"):
        shutil.copy(sample, tmp_path / "models" / sample.name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    commands = [c for block in BLOCKS for c in _commands(block)]
    assert any("--also sarif:initaudit.sarif" in c for c in commands)
    assert any("codequality:gl-code-quality-report.json" in c for c in commands)
    for command in commands:
        args = shlex.split(command)[1:]
        if "--baseline" in args:
            continue  # needs a baseline file written first (tests/test_baseline.py)
        assert main(args) == 1, command  # the samples hold failing models
    assert (tmp_path / "initaudit.sarif").is_file() and (tmp_path / "gl-code-quality-report.json").is_file()
    assert (tmp_path / "initaudit.xml").is_file()
