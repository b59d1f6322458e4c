"""The command line: a thin layer over ``initaudit.audit`` and the fan calculator."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from initaudit.cli.config import config_file, load_config
from initaudit.cli.progress import Progress
from initaudit.codes import RULES
from initaudit.errors import InitauditError
from initaudit.judge.schemes import TARGETS
from initaudit.pipeline.options import FAIL_ON, PROFILE_CHOICES
from initaudit.pipeline.paths import Exclude, expand
from initaudit.pipeline.per_file import apply_per_file_ignores
from initaudit.pipeline.run import audit
from initaudit.report.baseline import compare, read_baseline, write_baseline
from initaudit.report.formats import REPORTERS, needs_histograms, needs_provenance, render
from initaudit.report.formats.github import one_line
from initaudit.report.model import Report
from initaudit.trace.fans import CONVENTIONS, layout_fans
from initaudit.version import __version__


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise InitauditError(f"{message}{_did_you_mean(self, message)} (see `{self.prog} --help`)")


def _codes(text: str) -> list[str]:
    return [c.strip().upper() for c in text.split(",") if c.strip()]


def _patterns(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def audit_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="initaudit", description="Audit the initialization scale of every weight in ONNX models.",
                epilog="Other commands: `initaudit diff A B` (what changed between two models), "
                       "`initaudit fans SHAPE --layout LAYOUT`, `initaudit rules [CODE]`, "
                       "`initaudit schema` (the JSON report's schema). "
                       "Exit codes: 0 clean, 1 findings at or above --fail-on, 2 usage or unreadable model.")
    p.add_argument("models", nargs="*", metavar="MODEL", help="ONNX files, or folders (every *.onnx below)")
    p.add_argument("--target", metavar="{" + ",".join(TARGETS) + ",std:VALUE}",
                   help="scheme each layer is held to, or a fixed std such as std:0.02 (default: xavier)")
    p.add_argument("--convention", choices=CONVENTIONS, help="how fans are counted (default: connectivity)")
    p.add_argument("--profile", choices=PROFILE_CHOICES,
                   help="init: a fresh export held to its target (default); trained: the pre-deployment review "
                        "of trained weights; auto: decided per model from the weights' structure")
    p.add_argument("--pool-aware", action="store_true", default=None,
                   help="divide a conv's fan_out by the area of a pooling that follows (Theano/LeNet convention)")
    p.add_argument("--fp16", action="store_true", default=None, help="flag values that overflow float16")
    p.add_argument("--drift-limit", type=float, metavar="FACTOR",
                   help="flag a model whose activation variance is estimated to grow or shrink by more (default 100)")
    p.add_argument("-f", "--format", choices=sorted(REPORTERS), help="output format (default: table)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    p.add_argument("--fail-on", choices=FAIL_ON, help="lowest status that makes the exit code 1 (default: fail)")
    p.add_argument("--select", type=_codes, metavar="CODES", help="comma-separated rule codes (or prefixes) to keep")
    p.add_argument("--ignore", type=_codes, metavar="CODES", help="comma-separated rule codes (or prefixes) to drop")
    p.add_argument("-j", "--jobs", type=int, metavar="N",
                   help="worker processes for several models or one large one (default: the number of cores)")
    p.add_argument("--config", metavar="FILE", help="TOML file with a [tool.initaudit] table "
                                                    "(default: the nearest pyproject.toml)")
    p.add_argument("--also", action="append", default=[], metavar="FORMAT:FILE",
                   help="also write the report in FORMAT to FILE (repeatable), e.g. --also sarif:initaudit.sarif")
    p.add_argument("--baseline", metavar="FILE",
                   help="fail only on findings not recorded in FILE (matched by fingerprint); list those gone")
    p.add_argument("--write-baseline", metavar="FILE",
                   help="record every finding of this run in FILE and exit 0 (2 if a model was unreadable)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour the table (auto: on a terminal; NO_COLOR turns it off, FORCE_COLOR on)")
    # CI adoption (issue 21): which files, from where, and the SARIF category
    p.add_argument("--models-from", metavar="FILE",
                   help="read more model paths from FILE, one per line ('-': standard input)")
    p.add_argument("--exclude", type=_patterns, metavar="PATTERNS",
                   help="comma-separated globs a folder walk skips, replacing the defaults "
                        "(.git, .venv, venv, node_modules, __pycache__, hidden folders)")
    p.add_argument("--extend-exclude", type=_patterns, metavar="PATTERNS",
                   help="comma-separated globs a folder walk skips, in addition to the excluded ones")
    p.add_argument("--sarif-category", metavar="NAME",
                   help="SARIF automationDetails.id: the code-scanning category, one per matrix job")
    # the terminal (issue 20): quiet table, counts per rule
    p.add_argument("-q", "--quiet", action="store_true",
                   help="table: only the flagged layers, the findings and the summary")
    p.add_argument("--statistics", action="store_true",
                   help="print the count of findings per rule code instead of the report (which -o still writes)")
    p.add_argument("--version", action="version", version=f"initaudit {__version__}")
    return p


def fans_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="initaudit fans", description="Fan-in and fan-out of a weight shape in a named layout.")
    p.add_argument("shape", help="comma-separated dimensions, e.g. 5,5,3,6")
    p.add_argument("--layout", required=True,
                   help="one letter per axis: I input, O output, B batch, any other letter receptive field "
                        "(HWIO, OIHW, IO, OI, OIDHW, IOHW for ConvTranspose …)")
    p.add_argument("--groups", type=int, default=1, help="convolution groups (default 1)")
    return p


def rules_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="initaudit rules", description="List the rule codes, or explain one.")
    p.add_argument("code", nargs="?", help="a rule code, e.g. IA101")
    return p


def run_fans(argv: Sequence[str]) -> int:
    args = fans_parser().parse_args(argv)
    try:
        shape = [int(d) for d in args.shape.replace("x", ",").split(",") if d.strip()]
    except ValueError:
        raise InitauditError(f"shape {args.shape!r} is not a comma-separated list of integers") from None
    if not shape or any(d <= 0 for d in shape):
        raise InitauditError(f"shape {args.shape!r} needs positive dimensions")
    try:
        fans = layout_fans(shape, args.layout, args.groups)
    except ValueError as exc:
        raise InitauditError(str(exc)) from None
    fi, fo = fans.fan_in, fans.fan_out
    xavier = 2.0 / (fi + fo)
    print(f"shape {shape}, layout {args.layout.upper()}, groups {args.groups}")
    print(f"fan_in  {fi}")
    print(f"fan_out {fo}")
    print(f"xavier  var 2/({fi}+{fo}) = {xavier:.6g}  std {xavier ** 0.5:.6g}  uniform bound ±{(3 * xavier) ** 0.5:.6g}")
    print(f"he      var 2/{fi} = {2 / fi:.6g}  std {(2 / fi) ** 0.5:.6g}")
    print(f"lecun   var 1/{fi} = {1 / fi:.6g}  std {(1 / fi) ** 0.5:.6g}")
    return 0


def run_rules(argv: Sequence[str]) -> int:
    args = rules_parser().parse_args(argv)
    if args.code is None:
        for rule in RULES.values():
            print(f"{rule.code}  {rule.name:<28} {rule.severity:<5} {rule.summary}")
        return 0
    code = args.code.upper()
    if code not in RULES:
        raise InitauditError(f"unknown rule {args.code!r}; `initaudit rules` lists them")
    r = RULES[code]
    print(f"{r.code} {r.name} ({r.severity})\n\n{r.summary}\n\nWhy it matters: {r.why}\n\n"
          f"Example: {r.example}\n\nHow to fix: {r.fix}")
    return 0


def schema_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="initaudit schema", description="Print the JSON Schema of the --format json report.")
    p.add_argument("--diff", action="store_true", help="the schema of `initaudit diff --format json` instead")
    return p


def run_schema(argv: Sequence[str]) -> int:
    args = schema_parser().parse_args(argv)
    from initaudit.report.schema import schema_text

    sys.stdout.write(schema_text("diff-schema.json" if args.diff else "schema.json"))
    return 0


def diff_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="initaudit diff", description="Compare two models layer by layer: quantization damage, layers "
                                                   "a fine-tune left unchanged, layers that changed far more than "
                                                   "their peers, layers on one side only.",
                epilog="Exit codes: 0 clean, 1 findings at or above --fail-on, 2 usage or unreadable model.")
    p.add_argument("a", metavar="A", help="the reference model (the float export, the base, the last release)")
    p.add_argument("b", metavar="B", help="the model compared with it (quantized, fine-tuned, this release)")
    p.add_argument("-f", "--format", choices=sorted(REPORTERS), default="table", help="output format (default: table)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    p.add_argument("--fail-on", choices=FAIL_ON, default="fail",
                   help="lowest status that makes the exit code 1 (default: fail)")
    p.add_argument("--select", type=_codes, default=[], metavar="CODES", help="rule codes (or prefixes) to keep")
    p.add_argument("--ignore", type=_codes, default=[], metavar="CODES", help="rule codes (or prefixes) to drop")
    p.add_argument("-j", "--jobs", type=int, metavar="N", help="worker processes (default: the number of cores)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="colour the table")
    p.add_argument("-q", "--quiet", action="store_true", help="table: only the flagged layers and the summary")
    p.add_argument("--sarif-category", metavar="NAME", help="SARIF automationDetails.id (the code-scanning category)")
    return p


def run_diff(argv: Sequence[str]) -> int:
    args = diff_parser().parse_args(argv)
    from initaudit.pipeline.diff import diff

    started = time.monotonic()
    report = diff(args.a, args.b, jobs=args.jobs, fail_on=args.fail_on, select=tuple(args.select),
                  ignore=tuple(args.ignore))
    color = _use_color(args.color, sys.stdout.isatty(), os.environ, to_file=args.output is not None)
    extra: dict[str, Any] = {
        "table": {"quiet": True} if args.quiet else {},
        "sarif": {"category": args.sarif_category},
        "junit": {"timestamp": datetime.now(UTC), "duration": time.monotonic() - started},
    }.get(args.format, {})
    text = render(report, args.format, color=color, **extra)
    if args.output:
        _write(args.output, text)
    else:
        _stdout(text)
    return report.exit_code


def run_audit(argv: Sequence[str]) -> int:
    parser = audit_parser()
    args = parser.parse_args(argv)
    config = load_config(args.config)
    root = _project_root(args)
    files = _model_files(parser, args, config, root)
    options = {key: value for key, value in config.items() if key not in ("format", "jobs", *PATH_KEYS)}
    for key in ("target", "convention", "profile", "pool_aware", "fail_on", "select", "ignore", "fp16", "drift_limit"):
        value = getattr(args, key)
        if value is not None:
            options[key] = value
    for key in ("select", "ignore"):
        if key in options:
            options[key] = tuple(options[key])
    fmt = args.format or config.get("format", "table")
    if fmt not in REPORTERS:
        raise InitauditError(f"unknown format {fmt!r}; choose one of {', '.join(sorted(REPORTERS))}")
    jobs = args.jobs if args.jobs is not None else config.get("jobs")
    extra = []
    for spec in args.also:
        also_fmt, _, also_path = spec.partition(":")
        if also_fmt not in REPORTERS or not also_path:
            raise InitauditError(f"--also {spec!r}: expected FORMAT:FILE with FORMAT one of {', '.join(REPORTERS)}")
        extra.append((also_fmt, also_path))
    options["histograms"] = needs_histograms([fmt, *(f for f, _ in extra)])
    recorded = read_baseline(args.baseline) if args.baseline else None  # a bad file stops us before the work
    progress = Progress.for_stream(sys.stderr, [str(f) for f in files])
    timer = _Timer(progress)
    try:
        report = audit(files, jobs=jobs, errors="report", progress=timer, **options)
    finally:
        if progress is not None:
            progress.close()
    report = apply_per_file_ignores(report, config.get("per_file_ignores", ()), root)
    for warning in report.warnings:
        print(f"initaudit: warning: {one_line(warning)}", file=sys.stderr)
    for model in report.unreadable:
        print(f"initaudit: error: {one_line(f'{model.path}: {model.error}')}", file=sys.stderr)
    if recorded is not None:
        report = dataclasses.replace(report, baseline=compare(report, recorded, args.baseline))
    if needs_provenance([fmt, *(f for f, _ in extra)]):
        report = _provenance(report, options, argv, args.config, bool(config))
    color = _use_color(args.color, sys.stdout.isatty(), os.environ, to_file=args.output is not None)
    text = render(report, fmt, color=color, **_format_options(fmt, args, timer),
                  **({"quiet": True} if args.quiet and fmt == "table" else {}))
    for also_fmt, also_path in extra:
        _write(also_path, render(report, also_fmt, **_format_options(also_fmt, args, timer)))
    if fmt == "github" and os.environ.get("GITHUB_STEP_SUMMARY"):
        _write(os.environ["GITHUB_STEP_SUMMARY"], render(report, "markdown"), "a", "append the step summary")
    if args.output:
        _write(args.output, text)
    if args.statistics:
        from initaudit.report.formats.table import statistics

        _stdout(statistics(report))
    elif not args.output:
        _stdout(text)
    if args.write_baseline:
        count = write_baseline(report, args.write_baseline)
        print(f"initaudit: recorded {count} finding{'s' if count != 1 else ''} in {args.write_baseline}",
              file=sys.stderr)
        return 2 if report.unreadable else 0
    return report.exit_code


def _provenance(report: Report, options: dict[str, object], argv: Sequence[str], explicit: str | None,
                configured: bool) -> Report:
    """The sign-off facts of the JSON, Markdown and HTML reports: each file's SHA-256 and size, the effective
    options, the config file read (``--config``, or the nearest pyproject.toml when it held a table), the command."""
    from initaudit.pipeline.options import AuditOptions
    from initaudit.report.provenance import with_provenance

    found = config_file(explicit) if explicit or configured else None
    return with_provenance(report, AuditOptions(**options), argv, None if found is None else str(found))  # type: ignore[arg-type]


def _write(path: str, text: str, mode: str = "w", what: str = "write the report") -> None:
    try:
        with open(path, mode, encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise InitauditError(f"{path}: cannot {what} ({exc.strerror})") from None


# --- CI adoption (issue 21): model lists, excludes, colour, format options, "did you mean" ---------------

#: Config keys that say which files a run reads, not how each is judged.
PATH_KEYS = ("exclude", "extend_exclude", "per_file_ignores")


def _read_models_from(name: str) -> list[str]:
    """One path per line (blank lines skipped); ``-`` is standard input, e.g. ``git ls-files '*.onnx'``."""
    try:
        if name == "-":
            text = sys.stdin.read()
        else:
            if os.path.exists(name) and not os.path.isfile(name):
                raise InitauditError(f"{name}: --models-from needs a regular file or '-'")
            with open(name, encoding="utf-8") as handle:
                text = handle.read()
    except FileNotFoundError:
        raise InitauditError(f"{name}: --models-from file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InitauditError(f"{name}: cannot read --models-from ({exc})") from None
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


def _project_root(args: argparse.Namespace) -> str | None:
    """The folder relative ``exclude`` / ``per-file-ignores`` patterns are anchored to (ruff: the config's)."""
    found = config_file(args.config)
    return str(found.resolve().parent) if found is not None else None


def _model_files(parser: argparse.ArgumentParser, args: argparse.Namespace, config: dict,
                 root: str | None) -> list[Path]:
    """The models of the command line and of ``--models-from``, folders walked less the excluded paths
    (relative patterns anchored at ``root``)."""
    models = list(args.models)
    if args.models_from:
        models += _read_models_from(args.models_from)
    if not models:
        parser.error("the following arguments are required: MODEL (or --models-from FILE)")
    exclude = args.exclude if args.exclude is not None else config.get("exclude")
    extend = [*config.get("extend_exclude", ()), *(args.extend_exclude or ())]
    return expand(models, Exclude.of(exclude, extend, root))


def _use_color(choice: str, terminal: bool, environ: Mapping[str, str], to_file: bool = False) -> bool:
    """``--color always|never`` wins; a report written with ``-o`` is plain; else NO_COLOR (no-color.org)
    turns colour off and FORCE_COLOR (force-color.org) on, each when set and not empty, NO_COLOR first;
    else colour on a terminal."""
    if choice != "auto":
        return choice == "always"
    if to_file:
        return False
    if environ.get("NO_COLOR", ""):
        return False
    if environ.get("FORCE_COLOR", ""):
        return True
    return terminal


class _Timer:
    """Passes progress on, and keeps the seconds between one model's report and the previous one's:
    each model's audit time when they are audited one after another (the JUnit suites' ``time``)."""

    def __init__(self, progress: Callable[[int, int, str], None] | None) -> None:
        self.progress = progress
        self.started = datetime.now(UTC)
        self.last = time.perf_counter()
        self.durations: list[float] = []

    def __call__(self, done: int, total: int, path: str) -> None:
        now = time.perf_counter()
        self.durations.append(now - self.last)
        self.last = now
        if self.progress is not None:
            self.progress(done, total, path)


def _format_options(fmt: str, args: argparse.Namespace, timer: _Timer) -> dict[str, Any]:
    """What a format takes beyond the report: the SARIF category, the JUnit run's time and durations."""
    if fmt == "sarif":
        return {"category": args.sarif_category}
    if fmt == "junit":
        return {"timestamp": timer.started, "durations": tuple(timer.durations)}
    return {}


def _did_you_mean(parser: argparse.ArgumentParser, message: str) -> str:
    """``; did you mean --fail-on?`` for a mistyped flag or choice (difflib: Python 3.11 has no
    ``suggest_on_error``)."""
    import difflib
    import re

    if message.startswith("unrecognized arguments: "):
        options = [s for a in parser._actions for s in a.option_strings]
        words = [w.split("=", 1)[0] for w in message.split(": ", 1)[1].split() if w.startswith("-")]
        hints = [m[0] for w in words if (m := difflib.get_close_matches(w, options, n=1, cutoff=0.6))]
        return f"; did you mean {' or '.join(hints)}?" if hints else ""
    found = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if found:
        choices = [c.strip().strip("'") for c in found.group(2).split(",")]
        hint = difflib.get_close_matches(found.group(1), choices, n=1, cutoff=0.6)
        return f"; did you mean {hint[0]!r}?" if hint else ""
    return ""



def _stdout(text: str) -> None:
    """The report on stdout; a reader that closed the pipe early (``| head``) has what it wanted."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _closed_pipe()


def _closed_pipe() -> None:
    """Point stdout at the null device, so that nothing (the interpreter's last flush included) writes
    to the closed pipe again: a closed pipe ends the output, not the run, and costs no traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout without a descriptor (replaced in-process)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"fans": run_fans, "rules": run_rules, "schema": run_schema, "diff": run_diff}
    try:
        if argv and argv[0] in commands and not os.path.exists(argv[0]):
            return commands[argv[0]](argv[1:])
        return run_audit(argv)
    except InitauditError as exc:
        print(f"initaudit: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("initaudit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `initaudit rules | head`: the listing stops where the reader did
        _closed_pipe()
        return 0
    except Exception as exc:  # a bug of ours: still one line, unless asked for the traceback
        if os.environ.get("INITAUDIT_DEBUG"):
            raise
        print(f"initaudit: internal error: {type(exc).__name__}: {exc} "
              "(set INITAUDIT_DEBUG=1 for a traceback, and please report it)", file=sys.stderr)
        return 2
