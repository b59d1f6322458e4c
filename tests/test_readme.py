"""The README's and the docs pages' example sessions, snippets and tables are what the tool does today."""
from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from pathlib import Path

import pytest

from initaudit.cli.config import load_config
from initaudit.cli.main import audit_parser, diff_parser, fans_parser, main, rules_parser, schema_parser
from initaudit.codes import RULES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: The README and every page under docs/ (each is checked the same way).
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _text(page: str) -> str:
    return (ROOT / page).read_text(encoding="utf-8")


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)


SESSION = re.compile(r"```text\n\$ (initaudit [^\n]+)\n(.*?)```", re.S)
EXAMPLES = [(_rel(page), command, output) for page in PAGES
            for command, output in SESSION.findall(page.read_text(encoding="utf-8")) if "#" not in command]


@pytest.mark.parametrize("page,command,expected", EXAMPLES, ids=[f"{p}: {c}" for p, c, _ in EXAMPLES])
def test_documented_session(capsys, monkeypatch, page, command, expected):
    monkeypatch.chdir(ROOT)
    main(shlex.split(command)[1:])
    printed = capsys.readouterr().out
    expected = expected.split("\n$ ")[0]  # a session may go on with another command (echo $?)
    assert printed.rstrip() == expected.rstrip()


#: Where each sample run lives; every one is run above and compared with today's output.
SESSIONS = {
    "README.md": ["initaudit sample_models/lenet_torch_default.onnx"],
    "docs/cli.md": ["initaudit sample_models/lenet_dead_layer.onnx", "initaudit fans 5,5,3,6 --layout HWIO",
                    "initaudit fans 400,120 --layout IO", "initaudit fans 32,1,3,3 --layout OIHW --groups 32"],
    "docs/rules.md": ["initaudit rules IA202"],
    "docs/conventions.md": ["initaudit sample_models/lenet_torch_default.onnx --target auto",
                            "initaudit tests/fixtures/transformers/gpt2_missed.legacy.onnx --target auto"],
    "docs/trained-review.md": ["initaudit sample_models/lenet_torch_default.onnx --profile trained"],
    "docs/diff.md": ["initaudit diff tests/fixtures/diff/lenet_xavier.outlier.onnx "
                     "tests/fixtures/diff/lenet_xavier.outlier.qdq_per_tensor.onnx"],
}


def test_every_sample_run_is_where_it_belongs_and_checked(monkeypatch, capsys):
    for page, commands in SESSIONS.items():
        found = [command for p, command, _ in EXAMPLES if p == page]
        assert set(commands) <= set(found), (page, set(commands) - set(found))
    # the README's example ends with its exit code, as the tool returns it
    readme = _text("README.md")
    session = readme.split("$ initaudit sample_models/lenet_torch_default.onnx\n", 1)[1].split("```", 1)[0]
    assert session.rstrip().endswith("$ echo $?\n1")
    monkeypatch.chdir(ROOT)
    assert main(["sample_models/lenet_torch_default.onnx"]) == 1


def test_readme_starts_with_the_two_ci_commands():
    text = (ROOT / "README.md").read_text()
    block = text.split("```sh\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(block) == 2 and "pip install ." in block[0] and "pytest" in block[1]
    assert (ROOT / ".ci" / "run").read_text().count("README.md") >= 1
    assert os.access(ROOT / ".ci" / "run", os.X_OK)


def test_readme_states_no_count_of_its_tests():
    assert not re.search(r"\d[\d,]*\s+tests\b", _text("README.md"))


PYTHON_WITH_OUTPUT = re.compile(r"```python\n(.*?)```\s*(?:prints\s*)?```text\n(.*?)```", re.S)
LIBRARY = [(_rel(page), code, output) for page in PAGES
           for code, output in PYTHON_WITH_OUTPUT.findall(page.read_text(encoding="utf-8"))]


@pytest.mark.parametrize("page,code,expected", LIBRARY, ids=[p for p, _, _ in LIBRARY])
def test_library_example_prints_what_it_shows(monkeypatch, page, code, expected):
    monkeypatch.chdir(ROOT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, page, "exec"), {})
    assert out.getvalue().rstrip() == expected.rstrip()


def test_library_examples_are_checked():
    assert {"README.md", "docs/cli.md"} <= {page for page, _, _ in LIBRARY}


def test_library_baseline_example(tmp_path, monkeypatch):
    """docs/cli.md's second Python block compares the report of its first with a baseline file."""
    audit_block, baseline_block = _blocks(_text("docs/cli.md"), "python")[:2]
    assert "read_baseline" in baseline_block
    model = ROOT / "sample_models" / "lenet_torch_default.onnx"
    monkeypatch.chdir(tmp_path)
    assert main([str(model), "--write-baseline", "initaudit-baseline.json"]) == 0
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(audit_block.replace("sample_models/", f"{ROOT / 'sample_models'}/"), "cli.md", "exec"), namespace)
    assert namespace["report"].exit_code == 1
    exec(compile(baseline_block, "cli.md", "exec"), namespace)
    report = namespace["report"]
    assert report.baseline is not None and report.baseline.gone == () and report.exit_code == 0


TOML = [(_rel(page), block) for page in PAGES for block in _blocks(page.read_text(encoding="utf-8"), "toml")]


@pytest.mark.parametrize("page,block", TOML, ids=[p for p, _ in TOML])
def test_documented_config_is_valid(tmp_path, page, block):
    path = tmp_path / "pyproject.toml"
    path.write_text(block, encoding="utf-8")
    config = load_config(str(path))  # unknown keys or bad layer rules raise
    assert config


def test_config_blocks_are_checked():
    pages = [page for page, _ in TOML]
    assert pages.count("README.md") >= 1 and pages.count("docs/cli.md") >= 2 and "docs/conventions.md" in pages


def _command_lines(text: str) -> list[str]:
    lines = []
    for block in _blocks(text, "sh") + _blocks(text, "bash"):
        for line in block.splitlines():
            if line.startswith("initaudit "):
                lines.append(line)
    return lines


COMMAND_LINES = [(_rel(page), line) for page in PAGES for line in _command_lines(page.read_text(encoding="utf-8"))]


@pytest.mark.parametrize("page,line", COMMAND_LINES, ids=[f"{p}: {line.split('#')[0].strip()}" for p, line in COMMAND_LINES])
def test_documented_command_lines_parse(page, line):
    args = shlex.split(line, comments=True)[1:]
    for stop in (">", "|"):
        if stop in args:
            args = args[:args.index(stop)]
    parsers = {"fans": fans_parser, "rules": rules_parser, "diff": diff_parser, "schema": schema_parser}
    if args and args[0] in parsers:
        parsers[args[0]]().parse_args(args[1:])
    else:
        audit_parser().parse_args(args)  # a usage error raises InitauditError


def test_command_lines_are_checked():
    assert sum(page == "README.md" for page, _ in COMMAND_LINES) >= 8


def _usage_block() -> str:
    section = _text("docs/cli.md").split("## Usage", 1)[1]
    return _blocks(section, "text")[0]


def test_cli_page_lists_every_option_and_its_choices():
    block = _usage_block()
    parsers = (audit_parser(), fans_parser(), rules_parser(), diff_parser(), schema_parser())
    actions = [a for p in parsers for a in p._actions if a.option_strings and "--help" not in a.option_strings]
    known = {s for a in actions for s in a.option_strings}
    documented = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", block))
    assert documented == known
    for action in actions:
        flag = max(action.option_strings, key=len)
        if action.choices:
            expected = set(action.choices)
        elif isinstance(action.metavar, str) and action.metavar.startswith("{"):
            expected = set(action.metavar.strip("{}").split(","))
        else:
            continue
        line = next(line for line in block.splitlines() if re.search(rf"(?<![\w-]){flag} ", line))
        listed = line.split(flag, 1)[1].split()[0]
        assert set(listed.split("|")) == expected, flag


def test_rules_page_table_is_the_rule_table():
    rows = re.findall(r"^\| (IA\d{3}) \| ([\w-]+) \| (\w+) \|", _text("docs/rules.md"), re.M)
    assert rows == [(r.code, r.name, r.severity) for r in RULES.values()]


def _without_code(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", _without_code(page.read_text(encoding="utf-8")), re.M)}


def _links(page: Path) -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", _without_code(page.read_text(encoding="utf-8")))


@pytest.mark.parametrize("page", PAGES, ids=[_rel(p) for p in PAGES])
def test_links_between_pages_resolve(page):
    for link in _links(page):
        if re.match(r"[a-z]+:", link):
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.is_file(), f"{_rel(page)}: {link}"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{_rel(page)}: {link}"


def test_readme_links_every_docs_page():
    linked = {(ROOT / link.partition("#")[0]).resolve() for link in _links(ROOT / "README.md")}
    assert set(DOCS.glob("*.md")) <= linked
    assert len(_text("README.md").splitlines()) <= 300


def test_the_ops_table_in_the_docs_names_every_op_of_the_op_table():
    """docs/conventions.md's table of weight-carrying ops and ``trace.ops.OP_TABLE`` name the same ops: a
    new op is documented where users look for it."""
    from initaudit.trace.ops import OP_TABLE

    section = _text("docs/conventions.md").split("## What it follows in a graph", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    documented = set()
    for cell in rows[1:]:   # the header row first
        for name in re.split(r",|/", re.sub(r"\(.*?\)|com\.microsoft|on a constant.*", "", cell)):
            documented.update(n for n in name.split() if n[0].isupper())
    assert documented == {spec.op for spec in OP_TABLE}


def test_the_formats_table_in_the_docs_names_every_registered_format():
    """docs/ci.md's table of report formats and ``report.formats.FORMATS`` name the same formats."""
    from initaudit.report.formats import FORMATS

    section = _text("docs/ci.md").split("## Report formats", 1)[1].split("\n## ", 1)[0]
    documented = {m.group(1) for m in re.finditer(r"^\| `(\w+)` \|", section, re.M)}
    assert documented == {f.name for f in FORMATS}
