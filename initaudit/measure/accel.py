"""Optional compiled kernel for the statistics pass (``pip install 'initaudit[fast]'``).

numpy needs about ten passes over each chunk of float32 weights for exact statistics
(the float64 conversion, two float64 dot products, min, max, the zero count, the
float32 third and fourth powers): ~1.5 ns per value on one core with the chunk in
cache.  One loop compiled for this CPU by LLVM (through llvmlite, a wheel) does all of
it in a single pass (~0.65 ns), reads float16 and bfloat16 bit patterns directly, and
dequantizes per-channel, blocked and 4-bit codes in registers (``grouped_power_sums``).

Sums are float64 like numpy's (the third and fourth powers too, more precise than the
numpy path's float32); only their order differs (vector lanes), a relative difference
of order 1e-16·√n.  A chunk holding NaN or Inf makes the sums non-finite: the caller
then takes the numpy path for that chunk, which counts them.

Importing llvmlite takes ~0.07 s and each function compiles in ~0.04 s on first use, so
``prepare`` is called only for models large enough to repay it; ``INITAUDIT_ACCEL=0``
keeps the numpy path always.
"""
from __future__ import annotations

import ctypes
import math
import os
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

#: How each supported input is loaded and widened to float (``%f``), by numpy dtype string.
_LOADS = {
    "float32": ("float", "  %f = load float, float* %p, align 4"),
    "float16": ("half", "  %h = load half, half* %p, align 2\n  %f = fpext half %h to float"),
    "bfloat16": ("i16", "  %b = load i16, i16* %p, align 2\n  %w = zext i16 %b to i32\n"
                        "  %u = shl i32 %w, 16\n  %f = bitcast i32 %u to float"),
}

# One pass: s1..s4 = Σ(x - shift)^k in float64, min and max (as float), the count of x == 0.
# ``reassoc`` lets LLVM split the sums over vector lanes, ``fast`` the min/max (exact in any order; a
# NaN or Inf, for which they are undefined, sends the chunk to numpy anyway).
_DECLARATIONS = """
declare float @llvm.minnum.f32(float, float)
declare float @llvm.maxnum.f32(float, float)
declare double @llvm.minnum.f64(double, double)
declare double @llvm.maxnum.f64(double, double)
"""
_TEMPLATE = """
define void @sums_{name}({elem}* noalias nocapture readonly %x, i64 %n, double %shift,
                         double* noalias nocapture %out) {{
entry:
  %any = icmp sgt i64 %n, 0
  br i1 %any, label %loop, label %done
loop:
  %i = phi i64 [0, %entry], [%next, %loop]
  %s1 = phi double [0.0, %entry], [%s1n, %loop]
  %s2 = phi double [0.0, %entry], [%s2n, %loop]
  %s3 = phi double [0.0, %entry], [%s3n, %loop]
  %s4 = phi double [0.0, %entry], [%s4n, %loop]
  %lo = phi float [0x7FF0000000000000, %entry], [%lon, %loop]
  %hi = phi float [0xFFF0000000000000, %entry], [%hin, %loop]
  %z = phi i64 [0, %entry], [%zn, %loop]
  %p = getelementptr inbounds {elem}, {elem}* %x, i64 %i
{load}
  %d = fpext float %f to double
  %v = fsub double %d, %shift
  %v2 = fmul double %v, %v
  %v3 = fmul double %v2, %v
  %v4 = fmul double %v2, %v2
  %s1n = fadd reassoc double %s1, %v
  %s2n = fadd reassoc double %s2, %v2
  %s3n = fadd reassoc double %s3, %v3
  %s4n = fadd reassoc double %s4, %v4
  %lon = call fast float @llvm.minnum.f32(float %lo, float %f)
  %hin = call fast float @llvm.maxnum.f32(float %hi, float %f)
  %zero = fcmp oeq float %f, 0.0
  %zi = zext i1 %zero to i64
  %zn = add i64 %z, %zi
  %next = add nuw nsw i64 %i, 1
  %more = icmp slt i64 %next, %n
  br i1 %more, label %loop, label %done
done:
  %r1 = phi double [0.0, %entry], [%s1n, %loop]
  %r2 = phi double [0.0, %entry], [%s2n, %loop]
  %r3 = phi double [0.0, %entry], [%s3n, %loop]
  %r4 = phi double [0.0, %entry], [%s4n, %loop]
  %rlo = phi float [0x7FF0000000000000, %entry], [%lon, %loop]
  %rhi = phi float [0xFFF0000000000000, %entry], [%hin, %loop]
  %rz = phi i64 [0, %entry], [%zn, %loop]
  store double %r1, double* %out
  %o2 = getelementptr double, double* %out, i64 1
  store double %r2, double* %o2
  %o3 = getelementptr double, double* %out, i64 2
  store double %r3, double* %o3
  %o4 = getelementptr double, double* %out, i64 3
  store double %r4, double* %o4
  %o5 = getelementptr double, double* %out, i64 4
  %dlo = fpext float %rlo to double
  store double %dlo, double* %o5
  %o6 = getelementptr double, double* %out, i64 5
  %dhi = fpext float %rhi to double
  store double %dhi, double* %o6
  %o7 = getelementptr double, double* %out, i64 6
  %dz = sitofp i64 %rz to double
  store double %dz, double* %o7
  ret void
}}
"""

# Quantized weights ``x = s_g·(q - z_g)``, dequantized in registers (exact in float64: the difference of
# two integers times a float32 scale), one pass with the same sums.  ``runs``: group g is the g-th run of
# ``length`` stored elements (a channel's row, a block); ``cols``: a [rows, cols] grid, group = column.
#: How each code type is loaded (``%p`` points at a stored element) into one or more float64 codes.
_CODES = {
    "int8": ("i8", ["  %b = load i8, i8* %p, align 1", "  %c0 = sitofp i8 %b to double"], 1),
    "uint8": ("i8", ["  %b = load i8, i8* %p, align 1", "  %c0 = uitofp i8 %b to double"], 1),
    "int16": ("i16", ["  %b = load i16, i16* %p, align 2", "  %c0 = sitofp i16 %b to double"], 1),
    "uint16": ("i16", ["  %b = load i16, i16* %p, align 2", "  %c0 = uitofp i16 %b to double"], 1),
    # two 4-bit codes per byte, low bits first (MatMulNBits)
    "uint4x2": ("i8", ["  %b = load i8, i8* %p, align 1", "  %l = and i8 %b, 15", "  %h = lshr i8 %b, 4",
                       "  %c0 = uitofp i8 %l to double", "  %c1 = uitofp i8 %h to double"], 2),
}
_INF, _NINF = "0x7FF0000000000000", "0xFFF0000000000000"
_ACCUMULATORS = (("s1", "double", "0.0"), ("s2", "double", "0.0"), ("s3", "double", "0.0"),
                 ("s4", "double", "0.0"), ("lo", "double", _INF), ("hi", "double", _NINF), ("z", "i64", "0"))


def _grouped(shape: str, name: str) -> str:
    """IR of ``{shape}_{name}(q, outer, inner, scale, zero, shift, out)``: an outer loop over runs (or rows)
    and an inner, vectorized loop over one run's elements (or a row's columns)."""
    elem, load, per_element = _CODES[name]
    columns = shape == "cols"
    index = "%j" if columns else "%g"
    group = [f"  %sp = getelementptr inbounds double, double* %scale, i64 {index}",
             "  %s = load double, double* %sp", f"  %zp = getelementptr inbounds double, double* %zero, i64 {index}",
             "  %zz = load double, double* %zp"]
    body = ["  %at = add nsw i64 %base, %j", f"  %p = getelementptr inbounds {elem}, {elem}* %q, i64 %at", *load]
    if columns:
        body += group
    current = {a: f"%i{a}" for a, _, _ in _ACCUMULATORS}
    for k in range(per_element):
        step = [f"  %x{k} = fmul double %e{k}, %s", f"  %v{k} = fsub double %x{k}, %shift",
                f"  %w{k} = fmul double %v{k}, %v{k}", f"  %t{k} = fmul double %w{k}, %v{k}",
                f"  %f{k} = fmul double %w{k}, %w{k}", f"  %o{k} = fcmp oeq double %x{k}, 0.0",
                f"  %n{k} = zext i1 %o{k} to i64"]
        body += [f"  %e{k} = fsub double %c{k}, %zz", *step]
        for (acc, kind, _), term in zip(_ACCUMULATORS, (f"%v{k}", f"%w{k}", f"%t{k}", f"%f{k}", None, None, f"%n{k}")):
            new = f"%{acc}{k}"
            if acc in ("lo", "hi"):
                call = "minnum" if acc == "lo" else "maxnum"
                body.append(f"  {new} = call fast double @llvm.{call}.f64(double {current[acc]}, double %x{k})")
            elif kind == "i64":
                body.append(f"  {new} = add i64 {current[acc]}, {term}")
            else:
                body.append(f"  {new} = fadd reassoc double {current[acc]}, {term}")
            current[acc] = new
    inner_phis = [f"  %i{a} = phi {t} [{init}, %outer], [{current[a]}, %inner]" for a, t, init in _ACCUMULATORS]
    outer_phis = [f"  %g{a} = phi {t} [{init}, %entry], [%l{a}, %latch]" for a, t, init in _ACCUMULATORS]
    merge = []
    for a, t, _ in _ACCUMULATORS:
        if a in ("lo", "hi"):
            call = "minnum" if a == "lo" else "maxnum"
            merge.append(f"  %l{a} = call double @llvm.{call}.f64(double %g{a}, double {current[a]})")
        elif t == "i64":
            merge.append(f"  %l{a} = add i64 %g{a}, {current[a]}")
        else:
            merge.append(f"  %l{a} = fadd double %g{a}, {current[a]}")
    results = [f"  %r{a} = phi {t} [{init}, %entry], [%l{a}, %latch]" for a, t, init in _ACCUMULATORS]
    stores = []
    for i, (a, t, _) in enumerate(_ACCUMULATORS):
        value = f"%r{a}"
        if t == "i64":
            stores.append(f"  %d{a} = sitofp i64 %r{a} to double")
            value = f"%d{a}"
        stores += [f"  %q{a} = getelementptr double, double* %out, i64 {i}", f"  store double {value}, double* %q{a}"]
    lines = [
        f"define void @{shape}_{name}({elem}* noalias nocapture readonly %q, i64 %outer_n, i64 %inner_n,",
        "    double* noalias nocapture readonly %scale, double* noalias nocapture readonly %zero, double %shift,",
        "    double* noalias nocapture %out) {",
        "entry:",
        "  %a = icmp sgt i64 %outer_n, 0", "  %b0 = icmp sgt i64 %inner_n, 0", "  %any = and i1 %a, %b0",
        "  br i1 %any, label %outer, label %done",
        "outer:", "  %g = phi i64 [0, %entry], [%gn, %latch]", *outer_phis,
        *([] if columns else group), "  %base = mul nsw i64 %g, %inner_n", "  br label %inner",
        "inner:", "  %j = phi i64 [0, %outer], [%jn, %inner]", *inner_phis, *body,
        "  %jn = add nuw nsw i64 %j, 1", "  %more = icmp slt i64 %jn, %inner_n",
        "  br i1 %more, label %inner, label %latch",
        "latch:", *merge, "  %gn = add nuw nsw i64 %g, 1", "  %moreg = icmp slt i64 %gn, %outer_n",
        "  br i1 %moreg, label %outer, label %done",
        "done:", *results, *stores, "  ret void", "}", ""]
    return "\n".join(lines)


_SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_void_p)
_GROUPED_SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                                      ctypes.c_void_p, ctypes.c_double, ctypes.c_void_p)


class PowerSums(NamedTuple):
    """Σ(x - shift)^k for k = 1..4, the range and the zero count of one finite chunk."""

    s1: float
    s2: float
    s3: float
    s4: float
    lo: float
    hi: float
    zeros: int


class _Compiled:
    """LLVM, initialized, and the functions compiled so far.  Each function is compiled on its first
    use (~0.04 s each: a model needs one or two of the thirteen), in its own engine, kept alive
    because the code lives in its memory."""

    def __init__(self) -> None:
        import llvmlite.binding as llvm

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        release_library_pages("llvmlite")  # what loading LLVM touched (~35 MB), before compiling touches more
        self.llvm = llvm
        self.engines: list[object] = []
        self.functions: dict[str, Callable[..., None]] = {}
        self.out = np.empty(7, np.float64)

    def function(self, name: str) -> Callable[..., None]:
        function = self.functions.get(name)
        if function is None:
            llvm = self.llvm
            shape, _, kind = name.partition("_")
            if shape == "sums":
                elem, load = _LOADS[kind]
                source, signature = _TEMPLATE.format(name=kind, elem=elem, load=load), _SIGNATURE
            else:
                source, signature = _grouped(shape, kind), _GROUPED_SIGNATURE
            module = llvm.parse_assembly(_DECLARATIONS + source)
            module.verify()
            machine = llvm.Target.from_default_triple().create_target_machine(  # owned by the engine
                cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3)
            tuning = llvm.create_pipeline_tuning_options(3)
            tuning.loop_vectorization = True
            tuning.slp_vectorization = True
            builder = llvm.create_pass_builder(machine, tuning)
            builder.getModulePassManager().run(module, builder)
            engine = llvm.create_mcjit_compiler(module, machine)
            engine.finalize_object()
            self.engines.append(engine)
            function = self.functions[name] = signature(engine.get_function_address(name))
            release_library_pages("llvmlite")
        return function


def _function(name: str) -> Callable[..., None] | None:
    """A compiled function, or None when the accelerator is not ready or compiling it failed."""
    global _COMPILED, _FAILED
    compiled = _COMPILED
    if compiled is None:
        return None
    try:
        return compiled.function(name)
    except Exception:  # an llvmlite whose API or target does not fit: numpy from now on
        _COMPILED, _FAILED = None, True
        return None


def release_library_pages(library: str) -> None:
    """Give back the resident pages of a shared library's unmodified file mappings.

    LLVM is a 170 MB library; importing and running the compiler leave ~70 MB of its
    code resident, which would count against the memory bound (peak RSS ≤ 128 MiB).
    Those pages are clean copies of the file: ``MADV_DONTNEED`` drops them from this
    process and any later use reads them back from the page cache.  Mappings holding
    modified (copy-on-write) pages are left alone.  Linux only; elsewhere a no-op.
    """
    try:
        with open("/proc/self/smaps", encoding="ascii", errors="replace") as smaps:
            lines = smaps.read().splitlines()
    except OSError:
        return
    madvise = ctypes.CDLL(None, use_errno=True).madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    span: tuple[int, int] | None = None
    fields: dict[str, int] = {}
    for line in lines + ["0-0 ---p 0 0:0 0 [end]"]:
        head = line.split()
        if head and "-" in head[0] and not head[0].endswith(":"):
            if span is not None and fields.get("Private_Dirty:") == 0 and fields.get("Anonymous:") == 0:
                madvise(span[0], span[1] - span[0], 4)  # MADV_DONTNEED
            start, end = (int(v, 16) for v in head[0].split("-"))
            span = (start, end) if len(head) >= 6 and library in head[5] and "w" not in head[1] else None
            fields = {}
        elif len(head) >= 2 and head[1].isdigit():
            fields[head[0]] = int(head[1])


_COMPILED: _Compiled | None = None
_FAILED = False


def enabled() -> bool:
    """False when the user turned the accelerator off (``INITAUDIT_ACCEL=0``)."""
    return os.environ.get("INITAUDIT_ACCEL", "1").strip().lower() not in ("0", "off", "no", "false")


def prepare() -> bool:
    """Compile the kernel once per process (forked workers inherit it); False when llvmlite is
    missing, the accelerator is off, or compiling failed (the numpy path then does the work)."""
    global _COMPILED, _FAILED
    if _COMPILED is None and not _FAILED and enabled():
        try:
            _COMPILED = _Compiled()
        except Exception:  # ImportError, or an llvmlite whose API or target does not fit: numpy it is
            _FAILED = True
    return _COMPILED is not None


def _out() -> np.ndarray:
    assert _COMPILED is not None
    return _COMPILED.out


def ready() -> bool:
    return _COMPILED is not None


def reset() -> None:
    """Forget the compiled kernel (tests: the numpy path again)."""
    global _COMPILED, _FAILED
    _COMPILED, _FAILED = None, False


#: The kernel input type of each numpy dtype the kernel reads.
_KINDS = {np.dtype(np.float32): "float32", np.dtype(np.float16): "float16"}


def kind_of(values: np.ndarray) -> str | None:
    """The kernel input type for an array, or None when the kernel does not read it."""
    return _KINDS.get(values.dtype)


def power_sums(values: np.ndarray, shift: float, kind: str | None = None) -> PowerSums | None:
    """The chunk's sums in one pass, or None when the kernel is not ready or the chunk is not finite.

    ``kind`` is "bfloat16" for raw bfloat16 bit patterns (uint16); otherwise the dtype decides.
    """
    kind = kind or kind_of(values)
    function = _function(f"sums_{kind}") if kind is not None else None
    if function is None:
        return None
    x = np.ascontiguousarray(values).reshape(-1)
    out = _out()
    function(x.ctypes.data, x.size, shift, out.ctypes.data)
    s1, s2, s3, s4, lo, hi, zeros = out.tolist()
    if not (math.isfinite(s2) and math.isfinite(s4) and math.isfinite(s1) and math.isfinite(s3)):
        return None
    return PowerSums(s1, s2, s3, s4, lo, hi, int(zeros))


#: The code kernel reading each numpy integer dtype.
_CODE_KINDS = {np.dtype(np.int8): "int8", np.dtype(np.uint8): "uint8", np.dtype(np.int16): "int16",
               np.dtype(np.uint16): "uint16"}


def grouped_power_sums(codes: np.ndarray, scale: np.ndarray, zero: np.ndarray, shift: float,
                       columns: bool, packed4: bool = False) -> PowerSums | None:
    """Power sums of ``scale_g·(codes - zero_g)`` in one pass, or None when the kernel is not ready or
    does not read these codes.  ``codes`` is 2-D: each row one group (``columns`` False; with
    ``packed4``, uint8 bytes of two 4-bit codes) or each column one group (``columns`` True);
    ``scale`` and ``zero`` hold one value per group."""
    kind = "uint4x2" if packed4 else _CODE_KINDS.get(codes.dtype)
    if kind is None or codes.ndim != 2 or (packed4 and (columns or codes.dtype != np.uint8)):
        return None
    function = _function(f"{'cols' if columns else 'runs'}_{kind}")
    if function is None:
        return None
    q = np.ascontiguousarray(codes)
    s = np.ascontiguousarray(scale, np.float64).reshape(-1)
    z = np.ascontiguousarray(zero, np.float64).reshape(-1)
    if s.size != q.shape[1 if columns else 0] or z.size != s.size:
        raise ValueError(f"{s.size} scales and {z.size} zero points for codes of shape {q.shape}")
    out = _out()
    function(q.ctypes.data, q.shape[0], q.shape[1], s.ctypes.data, z.ctypes.data, shift, out.ctypes.data)
    s1, s2, s3, s4, lo, hi, zeros = out.tolist()
    return PowerSums(s1, s2, s3, s4, lo, hi, int(zeros))
