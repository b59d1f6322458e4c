"""The README's example sessions are what the tool prints today."""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from initaudit.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
SESSION = re.compile(r"```text\n\$ (initaudit [^\n]+)\n(.*?)```", re.S)
EXAMPLES = [(command, output) for command, output in SESSION.findall((ROOT / "README.md").read_text())
            if "#" not in command]


@pytest.mark.parametrize("command,expected", EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_readme_example(capsys, monkeypatch, command, expected):
    monkeypatch.chdir(ROOT)
    main(shlex.split(command)[1:])
    printed = capsys.readouterr().out
    expected = expected.split("\n$ ")[0]  # a session may go on with another command (echo $?)
    assert printed.rstrip() == expected.rstrip()


def test_readme_starts_with_the_two_ci_commands():
    text = (ROOT / "README.md").read_text()
    block = text.split("```sh\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(block) == 2 and "pip install ." in block[0] and "pytest" in block[1]
    assert (ROOT / ".ci" / "run").read_text().count("README.md") >= 1
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
