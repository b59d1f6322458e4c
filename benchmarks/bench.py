#!/usr/bin/env python3
"""Throughput and peak memory of initaudit, per storage type, with --jobs, against the floor, in one run.

Generates synthetic models in a temporary folder, warms the page cache, then runs every command
interleaved and repeated (medians; ratios of the medians of paired runs):

1. storage types: the same N Mi weight values (default 256 Mi) as a chain of 4096×4096 MatMul
   weights in one external data file, stored as float32, bfloat16, float16, int8 through a per-axis
   DequantizeLinear, and MatMulNBits 4 bits block 32: wall, values/s, ratio to float32, peak RSS, with
   the compiled kernel (``initaudit[fast]``, when llvmlite is installed) and without it (numpy only);
2. float32 against the floor (``benchmarks/floor.py``: import onnx and numpy, parse the graph
   without data, one float32 sum-of-squares pass over the memory-mapped data) on a 4 GiB model;
3. ``--jobs``: a folder of many small models and folders of a few large ones (4 × 256 MiB, 1 GiB, 2 GiB), default jobs
   (the number of cores) against ``-j 1``;
4. ``--profile trained`` against ``--profile init`` on the models of 1 and the 4 GiB float32 one of 2: wall,
   ratio of the medians, peak RSS, with the compiled kernel and without it (the review's unit sums are taken
   in the statistics pass's own read: the target is ≤ 1.3× init's wall time and ≤ 128 MiB);
5. ``initaudit diff A B`` against ``initaudit A``: a 4 GiB float32 model and its fine-tune, and the float32
   storage model of 1 against its float16, int8 and 4-bit copies (target ≤ 2.5× and ≤ 128 MiB).

Peak RSS is the largest of the process and its children (from wait4), measured from a small
launcher process whose own ~9 MiB are the floor of every figure.

    python benchmarks/bench.py                 # the full run (sections 1-3 about 10 minutes on 2 cores, 4 about 10 more)
    python benchmarks/bench.py --only trained  # --profile trained against init (10 minutes measured, --repeat 3)
    python benchmarks/bench.py --only diff     # initaudit diff against one audit
    python benchmarks/bench.py --quick         # small sizes, 3 repeats: for development
    python benchmarks/bench.py --classic       # the earlier comparison with cat and the naive script
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOOR = Path(__file__).resolve().parent / "floor.py"
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


def make_external(folder: Path, gib: float, side: int = SIDE, tuned: float = 0.0) -> tuple[Path, list[Path]]:
    """A chain of float32 MatMul weights in one external data file; ``tuned`` > 0: the same weights each
    moved by N(0, (tuned·std)²) noise, as a fine-tune moves them (the other side of a diff)."""
    count = max(1, round(gib * (1 << 30) / (side * side * 4)))
    rng = np.random.default_rng(0)
    noise = np.random.default_rng(7)
    initializers, names, offset = [], [], 0
    with open(folder / "external.onnx.data", "wb") as data:
        for name, values in _weights(rng, count, side):
            if tuned:
                values = values + (noise.standard_normal(values.shape, dtype=np.float32)
                                   * np.float32(tuned * values.std()))
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
print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status),
      usage.ru_utime + usage.ru_stime)
"""


def run(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB, the largest of the command and its children)."""
    wall, rss, _ = run_cpu(argv)
    return wall, rss


#: Commands run as after ``pip install``, where Python's modules come with their compiled bytecode:
#: a PYTHONDONTWRITEBYTECODE in the environment (set on some CI images) would have every run
#: compile initaudit's own modules again (0.2 s here), a cost no installed copy pays.
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_cpu(argv: list[str]) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MiB) and CPU seconds (user + system, the command and its children)."""
    done = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, *argv], capture_output=True, text=True, check=True,
                          env=CHILD_ENV)
    wall, maxrss, code, cpu = done.stdout.split()
    if int(code) not in (0, 1):
        raise SystemExit(f"{' '.join(argv[:4])} failed with exit code {code}")
    return float(wall), int(maxrss) / 1024, float(cpu)


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


# ---------------------------------------------------------------- storage types

STORAGE = ("float32", "bfloat16", "float16", "int8 DequantizeLinear per axis", "MatMulNBits 4 bits block 32")
NBITS_BLOCK = 32


def _external(tensor: TensorProto, data, offset: int, payload: bytes) -> int:
    data.write(payload)
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", data.name.rsplit("/", 1)[-1]), ("offset", str(offset)),
                       ("length", str(len(payload)))):
        tensor.external_data.add(key=key, value=value)
    return offset + len(payload)


def _stored_weight(kind: str, values: np.ndarray) -> tuple[bytes, int, list[TensorProto], dict]:
    """(payload, ONNX data type, small side initializers, node attributes) of one weight."""
    side = values.shape[0]
    if kind == "float32":
        return values.tobytes(), TensorProto.FLOAT, [], {}
    if kind == "float16":
        return values.astype(np.float16).tobytes(), TensorProto.FLOAT16, [], {}
    if kind == "bfloat16":
        return (values.view(np.uint32) >> 16).astype(np.uint16).tobytes(), TensorProto.BFLOAT16, [], {}
    if kind.startswith("int8"):
        scale = (np.abs(values).max(axis=0) / 127).astype(np.float32)
        q = np.clip(np.round(values / scale), -127, 127).astype(np.int8)
        return q.tobytes(), TensorProto.INT8, [numpy_helper.from_array(scale, "scale"),
                                                numpy_helper.from_array(np.zeros(side, np.int8), "zero")], {}
    # MatMulNBits: B[n, k_block, 16] from W[k, n], per block scale absmax/7, codes + 8, packed zero points
    w = values.T.reshape(side, side // NBITS_BLOCK, NBITS_BLOCK)
    scale = (np.abs(w).max(axis=2) / 7).astype(np.float32)
    codes = np.clip(np.round(w / scale[:, :, None]) + 8, 0, 15).astype(np.uint8)
    packed = codes[:, :, 0::2] | (codes[:, :, 1::2] << 4)
    zeros = np.full((side, side // NBITS_BLOCK // 2), 0x88, np.uint8)
    return packed.tobytes(), TensorProto.UINT8, [numpy_helper.from_array(scale.ravel(), "scale"),
                                                 numpy_helper.from_array(zeros.ravel(), "zero")], \
        {"K": side, "N": side, "bits": 4, "block_size": NBITS_BLOCK}


def make_storage_model(folder: Path, kind: str, count: int, side: int = SIDE) -> tuple[Path, list[Path]]:
    """``count`` [side, side] weights of one storage type, chained, in one external data file."""
    stem = kind.split()[0].lower()
    rng = np.random.default_rng(0)
    nodes, initializers, x, offset = [], [], "x", 0
    float_type = TensorProto.FLOAT16 if kind == "float16" else TensorProto.BFLOAT16 if kind == "bfloat16" \
        else TensorProto.FLOAT
    with open(folder / f"{stem}.onnx.data", "wb") as data:
        for i, (name, values) in enumerate(_weights(rng, count, side)):
            payload, data_type, side_inits, attrs = _stored_weight(kind, values)
            dims = [side, side // NBITS_BLOCK, NBITS_BLOCK // 2] if attrs else [side, side]
            tensor = TensorProto(name=name, data_type=data_type, dims=dims)
            offset = _external(tensor, data, offset, payload)
            initializers.append(tensor)
            for init in side_inits:
                init.name = f"{name}_{init.name}"
                initializers.append(init)
            if attrs:
                nodes.append(helper.make_node("MatMulNBits", [x, name, f"{name}_scale", f"{name}_zero"], [f"h{i}"],
                                              domain="com.microsoft", **attrs))
            elif side_inits:
                nodes.append(helper.make_node("DequantizeLinear", [name, f"{name}_scale", f"{name}_zero"],
                                              [f"{name}_dq"], axis=1))
                nodes.append(helper.make_node("MatMul", [x, f"{name}_dq"], [f"h{i}"]))
            else:
                nodes.append(helper.make_node("MatMul", [x, name], [f"h{i}"]))
            x = f"h{i}"
    graph = helper.make_graph(nodes, "bench", [helper.make_tensor_value_info("x", float_type, [1, side])],
                              [helper.make_tensor_value_info(x, float_type, [1, side])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    path = folder / f"{stem}.onnx"
    onnx.save(model, path)
    return path, [path, folder / f"{stem}.onnx.data"]


def initaudit_argv(target: Path, *extra: str, compiled: bool = True) -> list[str]:
    """The command; ``compiled=False`` turns the optional compiled kernel off (numpy only)."""
    off = [] if compiled else ["env", "INITAUDIT_ACCEL=0"]
    return [*off, sys.executable, "-m", "initaudit", str(target), "--format", "json", "-o", os.devnull, *extra]


def accelerator() -> str | None:
    """The llvmlite version the compiled kernel would use, or None (numpy only)."""
    try:
        import llvmlite
    except ImportError:
        return None
    return str(llvmlite.__version__)


K = TypeVar("K")


@dataclass
class Timing:
    wall: float   # median wall seconds
    cpu: float    # median CPU seconds (user + system, with children)
    rss: float    # largest peak RSS, MiB


def interleaved(commands: dict[K, list[str]], repeat: int) -> dict[K, Timing]:
    """Medians of each command's runs, the commands run in turn ``repeat`` times."""
    for argv in commands.values():  # warm the page cache and the imports
        run_cpu(argv)
    results: dict[K, list[tuple[float, float, float]]] = {k: [] for k in commands}
    for _ in range(repeat):
        for name, argv in commands.items():
            results[name].append(run_cpu(argv))
    return {k: Timing(statistics.median(w for w, _, _ in v), statistics.median(c for _, _, c in v),
                      max(r for _, r, _ in v)) for k, v in results.items()}


def bench_storage(folder: Path, values_mi: int, repeat: int) -> None:
    count = max(1, values_mi * (1 << 20) // (SIDE * SIDE))
    values = count * SIDE * SIDE
    models = {kind: make_storage_model(folder, kind, count) for kind in STORAGE}
    configurations = {"compiled": True, "numpy": False} if accelerator() else {"numpy": False}
    got = interleaved({(kind, name): initaudit_argv(path, compiled=on) for kind, (path, _) in models.items()
                       for name, on in configurations.items()}, repeat)
    print(f"\n1. storage types: {values / (1 << 20):.0f} Mi values ({count} × {SIDE}×{SIDE} MatMul weights, one "
          f"external data file), initaudit --format json, median of {repeat} interleaved runs")
    for name in configurations:
        print(f"\n{name}{' (initaudit[fast])' if name == 'compiled' else ' (INITAUDIT_ACCEL=0, or no llvmlite)'}")
        print(f"{'storage':<32} {'data MiB':>9} {'wall s':>8} {'Mvalues/s':>10} {'vs float32':>11} "
              f"{'peak RSS MiB':>13} {'CPU s':>7} {'CPU vs float32':>15}")
        base = got["float32", name]
        for kind, (_, files) in models.items():
            data = files[1].stat().st_size / (1 << 20)
            t = got[kind, name]
            print(f"{kind:<32} {data:9.0f} {t.wall:8.3f} {values / t.wall / 1e6:10.0f} {t.wall / base.wall:10.2f}× "
                  f"{t.rss:13.0f} {t.cpu:7.3f} {t.cpu / base.cpu:14.2f}×")
    if len(configurations) > 1:
        print("\nnumpy / compiled, wall: " + ", ".join(
            f"{kind} {got[kind, 'numpy'].wall / got[kind, 'compiled'].wall:.2f}×" for kind in models))
    for _, files in models.values():
        for f in files:
            f.unlink()


def bench_floor(folder: Path, gib: float, repeat: int) -> None:
    model, files = make_external(folder, gib)
    commands = {"floor.py": [sys.executable, str(FLOOR), str(model)], "initaudit": initaudit_argv(model)}
    if accelerator():
        commands["initaudit (numpy)"] = initaudit_argv(model, compiled=False)
    got = interleaved(commands, repeat)
    size = sum(f.stat().st_size for f in files) / (1 << 30)
    print(f"\n2. float32 against the floor: {size:.2f} GiB external-data model, median of {repeat} interleaved runs")
    for name, t in got.items():
        print(f"{name:<18} wall {t.wall:8.3f} s, CPU {t.cpu:8.3f} s, peak RSS {t.rss:6.0f} MiB")
    for name in (n for n in got if n.startswith("initaudit")):
        print(f"{name} / floor: {got[name].wall / got['floor.py'].wall:.2f}× wall "
              f"({got[name].cpu / got['floor.py'].cpu:.2f}× CPU; initaudit uses every core, the floor one)")
    for f in files:
        f.unlink()


def bench_jobs(folder: Path, small_models: int, large_models: int, large_gibs: list[float], repeat: int) -> None:
    small_dir = folder / "small"
    small_dir.mkdir()
    for i in range(small_models):
        make_inline(small_dir, 6 * 256 * 256 * 4 / (1 << 30), f"small{i:02d}.onnx", side=256)
    folders = [(f"{small_models} small models (6 × 256×256 float32 each)", small_dir)]
    for gib in large_gibs:
        large_dir = folder / f"large-{gib:g}"
        for i in range(large_models):
            sub = large_dir / f"m{i}"
            sub.mkdir(parents=True)
            make_external(sub, gib)
        folders.append((f"{large_models} large models ({gib:g} GiB float32 each)", large_dir))
    jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    print(f"\n3. --jobs (default here: {jobs}) against -j 1, median of {repeat} interleaved runs")
    for label, target in folders:
        got = interleaved({"-j 1": initaudit_argv(target, "-j", "1"), "default": initaudit_argv(target)}, repeat)
        one, default = got["-j 1"], got["default"]
        print(f"{label:<48} -j 1 {one.wall:7.3f} s, default {default.wall:7.3f} s: default takes "
              f"{default.wall / one.wall:.2f}× the time of -j 1 ({one.wall / default.wall:.2f}× faster; "
              f"CPU {one.cpu:.2f} s vs {default.cpu:.2f} s)")
        if target != small_dir:
            shutil.rmtree(target)


#: What ``--profile trained`` may cost against ``--profile init`` (issue 19): wall-time ratio, peak RSS in MiB.
TRAINED_RATIO, RSS_BOUND = 1.3, 128


def bench_trained(folder: Path, values_mi: int, floor_gib: float, repeat: int) -> None:
    count = max(1, values_mi * (1 << 20) // (SIDE * SIDE))
    models = {kind: make_storage_model(folder, kind, count) for kind in STORAGE}
    large = folder / "large"
    large.mkdir()
    models[f"float32, {floor_gib:g} GiB"] = make_external(large, floor_gib)
    configurations = {"compiled": True, "numpy": False} if accelerator() else {"numpy": False}
    got = interleaved({(kind, name, profile): initaudit_argv(path, "--profile", profile, compiled=on)
                       for kind, (path, _) in models.items() for name, on in configurations.items()
                       for profile in ("init", "trained")}, repeat)
    print(f"\n4. --profile trained against --profile init: the models of 1 ({count * SIDE * SIDE / (1 << 20):.0f} Mi "
          f"values each) and a {floor_gib:g} GiB float32 one, median of {repeat} interleaved runs")
    for name in configurations:
        print(f"\n{name}{' (initaudit[fast])' if name == 'compiled' else ' (INITAUDIT_ACCEL=0, or no llvmlite)'}")
        print(f"{'model':<32} {'init s':>8} {'trained s':>10} {'× init':>7} {'init MiB':>9} {'trained MiB':>12} "
              f"{'CPU × init':>11}")
        for kind in models:
            init, trained = got[kind, name, "init"], got[kind, name, "trained"]
            ratio = trained.wall / init.wall
            mark = "" if ratio <= TRAINED_RATIO and trained.rss <= RSS_BOUND else "  (over the target)"
            print(f"{kind:<32} {init.wall:8.3f} {trained.wall:10.3f} {ratio:6.2f}× {init.rss:9.0f} {trained.rss:12.0f} "
                  f"{trained.cpu / init.cpu:10.2f}×{mark}")
    print(f"\ntarget: trained ≤ {TRAINED_RATIO}× init's wall time, peak RSS ≤ {RSS_BOUND} MiB")
    for _, files in models.values():
        for f in files:
            f.unlink()


#: What ``initaudit diff`` may cost (issue 22): its wall time against auditing one of the two models, peak RSS.
DIFF_RATIO = 2.5


def diff_argv(a: Path, b: Path, compiled: bool = True) -> list[str]:
    off = [] if compiled else ["env", "INITAUDIT_ACCEL=0"]
    return [*off, sys.executable, "-m", "initaudit", "diff", str(a), str(b), "--format", "json", "-o", os.devnull]


def bench_diff(folder: Path, values_mi: int, floor_gib: float, repeat: int) -> None:
    """``initaudit diff A B`` against ``initaudit A``: a float32 model and its fine-tune of ``floor_gib`` each,
    and the float32 storage model against its float16, int8 and 4-bit copies (the same values, stored
    lower)."""
    count = max(1, values_mi * (1 << 20) // (SIDE * SIDE))
    pairs: dict[str, tuple[Path, Path]] = {}
    for kind in STORAGE:
        own = folder / kind.split()[0].lower()
        own.mkdir()
        pairs[kind] = (make_storage_model(own, kind, count)[0], Path())
    base = pairs.pop("float32")[0]
    pairs = {f"float32 → {kind}": (base, path) for kind, (path, _) in pairs.items()}
    for side, tuned in (("a", 0.0), ("b", 0.05)):
        (folder / side).mkdir()
        make_external(folder / side, floor_gib, tuned=tuned)
    pairs[f"float32 {floor_gib:g} GiB → its fine-tune"] = (folder / "a" / "external.onnx", folder / "b" / "external.onnx")
    commands: dict[tuple[str, str], list[str]] = {}
    for label, (a, b) in pairs.items():
        commands[label, "audit A"] = initaudit_argv(a)
        commands[label, "diff"] = diff_argv(a, b)
    got = interleaved(commands, repeat)
    print(f"\n5. initaudit diff A B against initaudit A ({count * SIDE * SIDE / (1 << 20):.0f} Mi values a storage "
          f"model; a {floor_gib:g} GiB float32 pair), median of {repeat} interleaved runs")
    print(f"{'pair':<44} {'audit A s':>10} {'diff s':>8} {'× audit':>8} {'diff MiB':>9}")
    for label in pairs:
        audit, compared = got[label, "audit A"], got[label, "diff"]
        ratio = compared.wall / audit.wall
        mark = "" if ratio <= DIFF_RATIO and compared.rss <= RSS_BOUND else "  (over the target)"
        print(f"{label:<44} {audit.wall:10.3f} {compared.wall:8.3f} {ratio:7.2f}× {compared.rss:9.0f}{mark}")
    print(f"\ntarget: diff ≤ {DIFF_RATIO}× the audit of one model, peak RSS ≤ {RSS_BOUND} MiB")
    shutil.rmtree(folder / "a")
    shutil.rmtree(folder / "b")


def classic(folder: Path, args: argparse.Namespace) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and 3 repeats, for development")
    parser.add_argument("--values-mi", type=int, help="weight values per storage model, in Mi (default 256)")
    parser.add_argument("--floor-gib", type=float, help="size of the float32 model held to the floor (default 4)")
    parser.add_argument("--repeat", type=int, help="interleaved runs per command (default 5)")
    parser.add_argument("--only", choices=["storage", "floor", "jobs", "trained", "diff"], action="append",
                        help="run only these sections (repeatable)")
    parser.add_argument("--classic", action="store_true",
                        help="the earlier comparison with cat and the naive script instead")
    parser.add_argument("--external-gib", type=float, default=4.0, help="--classic: external-data model size")
    parser.add_argument("--inline-gib", type=float, default=1.0, help="--classic: inline model size")
    parser.add_argument("--no-naive", action="store_true", help="--classic: skip the (slow) naive script")
    parser.add_argument("--dir", help="where to generate the models (default: a temporary folder)")
    args = parser.parse_args()
    repeat = args.repeat or (3 if args.quick else 5)
    args.repeat = repeat
    values_mi = args.values_mi or (32 if args.quick else 256)
    floor_gib = args.floor_gib or (0.5 if args.quick else 4.0)
    sections = args.only or ["storage", "floor", "jobs", "trained", "diff"]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        compiled = f"llvmlite {accelerator()}" if accelerator() else "not installed (numpy only)"
        print(f"python {sys.version.split()[0]}, numpy {np.__version__}, onnx {onnx.__version__}, compiled kernel: "
              f"{compiled}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; generating models in "
              f"{folder} …", flush=True)
        if args.classic:
            classic(folder, args)
            return
        if "storage" in sections:
            bench_storage(folder, values_mi, repeat)
        if "floor" in sections:
            bench_floor(folder, floor_gib, repeat)
        if "jobs" in sections:
            bench_jobs(folder, 46, 2 if args.quick else 4, [0.125] if args.quick else [0.25, 1.0, 2.0], repeat)
        if "trained" in sections:
            bench_trained(folder, values_mi, floor_gib, repeat)
        if "diff" in sections:
            bench_diff(folder, values_mi, floor_gib, repeat)
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (figures from a busy machine are noisy)")


if __name__ == "__main__":
    main()
