"""Optional compiled kernel for the statistics pass (``pip install 'initaudit[fast]'``).

numpy needs about ten passes over each chunk of float32 weights for exact statistics
(the float64 conversion, two float64 dot products, min, max, the zero count, the
float32 third and fourth powers): ~1.5 ns per value on one core.  One loop compiled
for this CPU by LLVM (through llvmlite, a wheel) does all of it in a single pass,
about four times faster, and reads float16 and bfloat16 bit patterns directly.

Sums are float64 like numpy's (the third and fourth powers too, more precise than the
numpy path's float32); only their order differs (vector lanes), a relative difference
of order 1e-16·√n.  A chunk holding NaN or Inf makes the sums non-finite: the caller
then takes the numpy path for that chunk, which counts them.

Importing llvmlite and compiling take about 0.1 s, so ``prepare`` is called only for
models large enough to repay it; ``INITAUDIT_ACCEL=0`` keeps the numpy path always.
"""
from __future__ import annotations

import ctypes
import math
import os
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

_SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_void_p)


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
    """The JIT engine (kept alive: the functions live in its memory) and one function per input type."""

    def __init__(self) -> None:
        import llvmlite.binding as llvm

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        release_library_pages("llvmlite")  # what loading LLVM touched (~35 MB), before compiling touches more
        source = _DECLARATIONS + "".join(_TEMPLATE.format(name=name, elem=elem, load=load) for name, (elem, load) in _LOADS.items())
        module = llvm.parse_assembly(source)
        module.verify()
        machine = llvm.Target.from_default_triple().create_target_machine(
            cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3)
        tuning = llvm.create_pipeline_tuning_options(3)
        tuning.loop_vectorization = True
        tuning.slp_vectorization = True
        builder = llvm.create_pass_builder(machine, tuning)
        builder.getModulePassManager().run(module, builder)
        self.engine = llvm.create_mcjit_compiler(module, machine)
        self.engine.finalize_object()
        release_library_pages("llvmlite")
        self.functions = {name: _SIGNATURE(self.engine.get_function_address(f"sums_{name}")) for name in _LOADS}
        self.out = np.empty(7, np.float64)


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
    compiled = _COMPILED
    kind = kind or kind_of(values)
    if compiled is None or kind is None:
        return None
    x = np.ascontiguousarray(values).reshape(-1)
    out = compiled.out
    compiled.functions[kind](x.ctypes.data, x.size, shift, out.ctypes.data)
    s1, s2, s3, s4, lo, hi, zeros = out.tolist()
    if not (math.isfinite(s2) and math.isfinite(s4) and math.isfinite(s1) and math.isfinite(s3)):
        return None
    return PowerSums(s1, s2, s3, s4, lo, hi, int(zeros))
