"""Run the test suite against the lowest and the newest dependencies on every Python the project claims.

    python scripts/matrix.py                        # 3.11, 3.12, 3.13 × lowest, newest
    python scripts/matrix.py --python 3.11 --deps lowest

Each environment is a fresh virtual environment under .matrix/ (deleted first, so "newest" is what pip
resolves today and "lowest" is exactly constraints/lowest.txt), where pip installs '.[test]' from wheels
only and pytest runs the whole suite.  Interpreters are found as pythonX.Y on PATH or under pyenv's
versions folder; a claimed Python that cannot be found is an error.  Needs nothing but the standard library.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHONS = ("3.11", "3.12", "3.13")
DEPS = ("lowest", "newest")
SHOWN = ("numpy", "onnx", "protobuf", "tabulate", "threadpoolctl", "pytest", "hypothesis", "jsonschema", "pre-commit",
         "llvmlite")


@dataclass
class Outcome:
    name: str
    ok: bool
    summary: str
    versions: str
    install_s: float
    test_s: float


def find_python(version: str) -> str | None:
    """An interpreter that really is ``version`` (a pyenv shim on PATH may point nowhere)."""
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = [shutil.which(f"python{version}")] + sorted(
        glob.glob(os.path.join(pyenv_root, "versions", f"{version}.*", "bin", "python")), reverse=True)
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


def run(command: list[str], log) -> int:
    log.write(f"+ {' '.join(command)}\n")
    log.flush()
    return subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode


def one_environment(python: str, version: str, deps: str) -> Outcome:
    name = f"py{version}-{deps}"
    venv = ROOT / ".matrix" / name
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(exist_ok=True)
    log_path = venv.parent / f"{name}.log"
    with open(log_path, "w") as log:
        started = time.perf_counter()
        pip = [str(venv / "bin" / "python"), "-m", "pip"]
        install = pip + ["install", "--quiet", "--only-binary=:all:", ".[test]"]
        if deps == "lowest":
            install += ["--constraint", str(ROOT / "constraints" / "lowest.txt")]
        failed = run([python, "-m", "venv", str(venv)], log) or run(install, log)
        install_s = time.perf_counter() - started
        if failed:
            return Outcome(name, False, f"install failed (see {log_path})", "", install_s, 0.0)
        freeze = subprocess.run(pip + ["freeze"], capture_output=True, text=True).stdout.split()
        versions = " ".join(line for line in freeze if line.split("==")[0].lower().replace("_", "-") in SHOWN)
        started = time.perf_counter()
        tests = subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider"],
                               cwd=ROOT, capture_output=True, text=True)
        test_s = time.perf_counter() - started
        log.write(tests.stdout + tests.stderr)
    lines = [line for line in tests.stdout.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    summary = lines[-1].strip("= ") if lines else f"pytest exit code {tests.returncode} (see {log_path})"
    return Outcome(name, tests.returncode == 0, summary, versions, install_s, test_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", nargs="+", choices=PYTHONS, default=list(PYTHONS))
    parser.add_argument("--deps", nargs="+", choices=DEPS, default=list(DEPS))
    args = parser.parse_args(argv)
    outcomes = []
    for version in args.python:
        python = find_python(version)
        if python is None:
            outcomes.append(Outcome(f"py{version}", False, f"no python{version} found", "", 0.0, 0.0))
            continue
        for deps in args.deps:
            print(f"[matrix] py{version}-{deps} with {python} ...", flush=True)
            outcome = one_environment(python, version, deps)
            print(f"[matrix] {outcome.name}: {'ok' if outcome.ok else 'FAILED'}: {outcome.summary}; "
                  f"install {outcome.install_s:.0f} s, tests {outcome.test_s:.0f} s\n         {outcome.versions}",
                  flush=True)
            outcomes.append(outcome)
    print("\n| environment | result | install | tests | versions |\n|---|---|---|---|---|")
    for o in outcomes:
        print(f"| {o.name} | {o.summary} | {o.install_s:.0f} s | {o.test_s:.0f} s | {o.versions} |")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
