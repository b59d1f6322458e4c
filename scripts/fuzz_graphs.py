#!/usr/bin/env python3
"""Long structure-aware fuzzing run: generate N strange graphs (tests/graphgen.py), audit each in-process
under a time limit, and log every failure (a traceback that is not a one-line error, or a hang) with
the model saved for replay, instead of stopping at the first.

    nohup python scripts/fuzz_graphs.py --examples 10000 --out /tmp/fuzz > /tmp/fuzz.log 2>&1 &

Prints a summary: models generated, audited, refused with a one-line error, failures by kind.
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from graphgen import audit_strange, strange_models  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=20, help="time limit per model")
    parser.add_argument("--out", default=None, help="folder for the failing models (default: a temp folder)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="fuzz_graphs_"))
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="fuzz_work_"))
    counts: collections.Counter[str] = collections.Counter()
    kinds: dict[str, int] = {}
    start = time.monotonic()
    slowest = 0.0

    @settings(max_examples=args.examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=False)
    @given(model=strange_models())
    def run(model):
        nonlocal slowest
        counts["generated"] += 1
        began = time.monotonic()
        try:
            counts[audit_strange(model, work, args.seconds)] += 1
        except Exception as exc:  # a failure: logged, the model kept
            frames = traceback.extract_tb(exc.__traceback__)
            where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames)
                          if "/initaudit/" in f.filename), "?")
            kind = f"{type(exc).__name__} at {where}"
            counts["failed"] += 1
            if kind not in kinds:
                kinds[kind] = 0
                (out / f"failure_{len(kinds):03d}.onnx").write_bytes(model.SerializeToString())
                print(f"NEW FAILURE {len(kinds)}: {kind}: {str(exc)[:200]}", flush=True)
                traceback.print_exception(exc, limit=-6, file=sys.stdout)
            kinds[kind] += 1
        slowest = max(slowest, time.monotonic() - began)
        if counts["generated"] % 500 == 0:
            print(f"{counts['generated']} generated, {dict(counts)}, {time.monotonic() - start:.0f} s", flush=True)

    if args.seed is not None:
        from hypothesis import seed
        run = seed(args.seed)(run)
    run()
    print(f"done: {dict(counts)} in {time.monotonic() - start:.0f} s, slowest model {slowest:.2f} s")
    for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {n:6d}  {kind}")
    print(f"failing models in {out}")
    return 1 if kinds else 0


if __name__ == "__main__":
    sys.exit(main())
