"""The CI snippets of the README and docs/ci.md are valid YAML and their initaudit commands run as written."""
from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from initaudit.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
yaml = pytest.importorskip("yaml", reason="PyYAML comes with pre-commit (the test extra)")
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _fenced(page: Path, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)


#: Every YAML block of the README and of the docs pages, with the page it is on.
BLOCKS = [(page.relative_to(ROOT).as_posix(), block) for page in PAGES for block in _fenced(page, "yaml")]


def _commands(block: str) -> list[str]:
    return [line.split("run: ", 1)[-1].lstrip("- ").strip() for line in block.splitlines()
            if re.match(r"^\s*(- run: |- )?initaudit ", line.strip()) or "run: initaudit " in line]


def _on(page: str) -> list[str]:
    return [block for p, block in BLOCKS if p == page]


def test_snippets_parse():
    ci = _on("docs/ci.md")
    assert len(ci) >= 5
    for marker in ("# .github/workflows/initaudit.yml", "uses: OWNER/initaudit@REF", "# .gitlab-ci.yml",
                   "repo: https://github.com/OWNER/initaudit", "repo: local"):
        assert any(marker in block for block in ci), marker
    # the README shows the GitHub workflow, the same as docs/ci.md's
    workflow = [b for b in _on("README.md") if b.startswith("# .github/workflows/")]
    assert len(workflow) == 1 and workflow[0] in ci
    for _, block in BLOCKS:
        if block.lstrip().startswith("[tool"):
            continue
        text = block if not block.startswith("      - uses") else "steps:\n" + block
        assert yaml.safe_load(text) is not None


def _models(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    for sample in (ROOT / "sample_models").glob("*.onnx"):
        shutil.copy(sample, tmp_path / "models" / sample.name)


def test_snippet_commands_run_on_sample_models(tmp_path, monkeypatch, capsys):
    _models(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    commands = [c for _, block in BLOCKS for c in _commands(block)]
    assert any("--also sarif:initaudit.sarif" in c for c in commands)
    assert any("codequality:gl-code-quality-report.json" in c for c in commands)
    for command in commands:
        args = shlex.split(command)[1:]
        if "--baseline" in args:
            continue  # needs a baseline file written first (below, and tests/test_baseline.py)
        assert main(args) == 1, command  # the samples hold failing models
    assert (tmp_path / "initaudit.sarif").is_file() and (tmp_path / "gl-code-quality-report.json").is_file()
    assert (tmp_path / "initaudit.xml").is_file()


def test_baseline_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    """docs/ci.md's two baseline commands: record today's findings (exit 0), then nothing is new (exit 0)."""
    section = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8").split("## Adopting initaudit", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    commands = [shlex.split(line, comments=True) for line in block.splitlines() if line.startswith("initaudit ")]
    assert [c[2] for c in commands] == ["--write-baseline", "--baseline"]
    _models(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(commands[1][1:]) == 2  # no baseline file yet: a usage error
    assert main(commands[0][1:]) == 0
    assert (tmp_path / commands[0][3]).is_file()
    assert main(commands[1][1:]) == 0
    assert "0 new" in capsys.readouterr().out
    (tmp_path / "models" / "lenet_xavier.onnx").write_bytes((ROOT / "sample_models" / "lenet_std1.onnx").read_bytes())
    assert main(commands[1][1:]) == 1  # a model whose findings are not recorded


def _workflows_of_the_docs() -> dict[str, str]:
    """Every workflow the README and the docs show, as a file actionlint can read: a whole workflow as it
    is, the composite action's steps inside a job, with this repository's action as ``./``."""
    workflows = {}
    for i, (page, block) in enumerate(BLOCKS):
        if block.startswith("# .github/workflows/"):
            workflows[f"{i}-{Path(page).stem}.yml"] = block
        elif block.startswith("      - uses") and "OWNER/initaudit@REF" in block:
            steps = block.replace("OWNER/initaudit@REF", "./")
            workflows[f"{i}-{Path(page).stem}-action.yml"] = (
                "name: action\non: [push]\njobs:\n  audit:\n    runs-on: ubuntu-latest\n    strategy:\n"
                "      matrix:\n        python: [\"3.12\"]\n    steps:\n      - uses: actions/checkout@v5\n" + steps)
    return workflows


def test_the_docs_show_a_workflow_and_the_action():
    names = list(_workflows_of_the_docs())
    assert any(n.endswith("-README.yml") for n in names) and any(n.endswith("-ci-action.yml") for n in names)


def test_actionlint_accepts_every_workflow_of_the_docs(tmp_path):
    from test_ci_action import lint_repo, needs_actionlint

    if needs_actionlint.args[0]:
        pytest.skip(needs_actionlint.kwargs["reason"])
    done = lint_repo(tmp_path, _workflows_of_the_docs())
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


def test_no_snippet_installs_a_package_name_from_the_index():
    """initaudit is not on the package index: every install the pages show is a path (a checkout, a wheel)
    or a third-party package; the name itself appears only where a page says it is not published."""
    installs = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"pip install\s+(['\"]?[^\s`'\"]+)['\"]?(`?[^\n]{0,40})", text):
            installs.append((page.name, match.group(1).strip("'\""), match.group(2)))
    assert len(installs) >= 8
    for page, target, after in installs:
        if target == "initaudit":
            assert after.startswith(("` would install nothing", "` finds no such package")), (page, after)
        else:
            assert target.startswith((".", "/", "vendor/", "dist/", "-e")) or target in (
                "torch==2.13.0", "onnxruntime"), (page, target)
