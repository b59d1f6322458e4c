#!/usr/bin/env python3
"""Throughput and peak memory of initaudit against the naive script and `cat`, in one run.

Generates synthetic models in a temporary folder (an external-data model and an
inline-weights model of the given sizes, and a small one), warms the page cache,
then runs, interleaved and repeated:

* ``cat`` of the model's bytes to /dev/null (the floor: reading them once),
* the naive script (``onnx.load`` then ``numpy_helper.to_array(t).var()`` per initializer),
* ``initaudit MODEL --format json``,

and prints medians of wall time, throughput and peak RSS (the largest of the
process and its children, from wait4, measured from a small launcher process
whose own ~9 MiB are the floor of every figure), with the ratios.

    python benchmarks/bench.py                       # 4 GiB external, 1 GiB inline, 5 repeats
    python benchmarks/bench.py --external-gib 1 --inline-gib 0.25 --repeat 3
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NAIVE = ("import sys, onnx; from onnx import numpy_helper; m = onnx.load(sys.argv[1]); "
         "[numpy_helper.to_array(t).var() for t in m.graph.initializer]")
SIDE = 4096  # each weight is a [SIDE, SIDE] float32 matrix (64 MiB)


def _weights(rng: np.random.Generator, count: int, side: int):
    bound = math.sqrt(6.0 / (2 * side))
    for i in range(count):
        yield f"w{i}", (rng.random((side, side), dtype=np.float32) * 2 - 1) * np.float32(bound)


def _chain(names: list[str], side: int, initializers: list[TensorProto]) -> onnx.ModelProto:
    nodes, x = [], "x"
    for i, name in enumerate(names):
        nodes.append(helper.make_node("MatMul", [x, name], [f"h{i}"]))
        x = f"h{i}"
    graph = helper.make_graph(nodes, "bench", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, side])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, side])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def make_external(folder: Path, gib: float, side: int = SIDE) -> tuple[Path, list[Path]]:
    count = max(1, round(gib * (1 << 30) / (side * side * 4)))
    rng = np.random.default_rng(0)
    initializers, names, offset = [], [], 0
    with open(folder / "external.onnx.data", "wb") as data:
        for name, values in _weights(rng, count, side):
            data.write(values.tobytes())
            tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=values.shape)
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", "external.onnx.data"), ("offset", str(offset)),
                               ("length", str(values.nbytes))):
                tensor.external_data.add(key=key, value=value)
            offset += values.nbytes
            initializers.append(tensor)
            names.append(name)
    path = folder / "external.onnx"
    onnx.save(_chain(names, side, initializers), path)
    return path, [path, folder / "external.onnx.data"]


def make_inline(folder: Path, gib: float, name: str = "inline.onnx", side: int = SIDE) -> tuple[Path, list[Path]]:
    count = max(1, round(gib * (1 << 30) / (side * side * 4)))
    rng = np.random.default_rng(1)
    initializers = [numpy_helper.from_array(values, n) for n, values in _weights(rng, count, side)]
    path = folder / name
    onnx.save(_chain([t.name for t in initializers], side, initializers), path)
    return path, [path]


#: A minimal launcher: a child's peak RSS starts at its parent's (Linux copies the memory
#: high-water mark across fork and exec), so commands are started from this small
#: process rather than from the benchmark, which holds the models it generated.
LAUNCHER = """
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1); os.dup2(fd, 2)
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def run(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB, the largest of the command and its children)."""
    done = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, *argv], capture_output=True, text=True, check=True)
    wall, maxrss, code = done.stdout.split()
    if int(code) not in (0, 1):
        raise SystemExit(f"{' '.join(argv[:4])} failed with exit code {code}")
    return float(wall), int(maxrss) / 1024


def bench(label: str, model: Path, files: list[Path], repeat: int, naive: bool) -> None:
    size = sum(f.stat().st_size for f in files)
    commands = {
        "cat": ["cat", *map(str, files)],
        "initaudit": [sys.executable, "-m", "initaudit", str(model), "--format", "json", "-o", os.devnull],
    }
    if naive:
        commands["naive"] = [sys.executable, "-c", NAIVE, str(model)]
    for argv in commands.values():  # warm the page cache and the imports
        run(argv)
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
    for _ in range(repeat):
        for name, argv in commands.items():
            results[name].append(run(argv))
    wall = {k: statistics.median(w for w, _ in v) for k, v in results.items()}
    rss = {k: max(r for _, r in v) for k, v in results.items()}
    print(f"\n{label}: {size / (1 << 30):.2f} GiB in {len(files)} file(s), median of {repeat} interleaved runs")
    print(f"{'command':<10} {'wall s':>8} {'GB/s':>7} {'peak RSS MiB':>13} {'× cat':>7}")
    for name in commands:
        print(f"{name:<10} {wall[name]:8.3f} {size / wall[name] / 1e9:7.2f} {rss[name]:13.0f} "
              f"{wall[name] / wall['cat']:7.2f}")
    if naive:
        print(f"initaudit is {wall['naive'] / wall['initaudit']:.1f}× faster than the naive script")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--external-gib", type=float, default=4.0)
    parser.add_argument("--inline-gib", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-naive", action="store_true", help="skip the (slow) naive script")
    parser.add_argument("--dir", help="where to generate the models (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        print(f"python {sys.version.split()[0]}, numpy {np.__version__}, onnx {onnx.__version__}, "
              f"{os.cpu_count()} cores; generating models in {folder} …", flush=True)
        small, small_files = make_inline(folder, 5 / 1024, "small.onnx", side=512)
        bench("small inline model", small, small_files, args.repeat, naive=not args.no_naive)
        if args.inline_gib > 0:
            inline, inline_files = make_inline(folder, args.inline_gib)
            bench("inline model", inline, inline_files, args.repeat, naive=not args.no_naive)
            for f in inline_files:
                f.unlink()
        if args.external_gib > 0:
            external, external_files = make_external(folder, args.external_gib)
            bench("external-data model", external, external_files, args.repeat, naive=not args.no_naive)


if __name__ == "__main__":
    main()
