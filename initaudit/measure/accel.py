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
declare double @llvm.fabs.f64(double)
declare float @llvm.fabs.f32(float)
declare double @llvm.fmuladd.f64(double, double, double)
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


# The trained-model review's sums (``measure.units``) and the moments' power sums, in one read: the chunk as a
# grid of ``rows`` rows of up to ``nb`` blocks of ``bw`` stored elements (the first row may start at column
# ``cfirst``, the last one end at ``cend``; rows ``stride`` elements apart), each value widened (or
# dequantized, ``s·(q - z)`` with the scale and zero point of its block or of its column) to float64:
# Σy, Σy², Σy³, Σy⁴, Σy⁶, Σy⁸, min and max, the counts of y = 0, |y| < 2^-14 and |y| < 2^-25 and the Σy²
# of the last; per output unit Σy² and Σy, per input unit Σy², added in place to ``osq``/``osum``/``isq``
# either at the row's unit (``flags`` bit 0 output, bit 1 input: the row lies in one unit) or at the row's
# unit + column (``ocol``/``icol``, compiled in: a unit axis along the row).
#
# The counts cost as much as the sums if taken in the float64 loop, so: floats are first read in one
# streaming pass as float32 (8 lanes; float64 as is): NaN or Inf (then nothing is summed and ``res[13]``
# is 0: numpy takes the chunk) and the three counts; a chunk holding a non-zero value below 2^-25 (rare)
# then sums those values' squares in a short loop.  That pass also brings the chunk into the cache, where
# the sums find it (interleaved with the sums, row by row, the reads from memory stalled: 3.7 ns a value
# in place against 2.2 for the moments' kernel).  Dequantized values ``s·d`` with an integer d: |s·d| ≥ |s| unless d = 0,
# so when every scale of the call is at least 2^-14 (``full`` False, checked by the caller) the three counts
# are the zero count; otherwise (``full``) the loop counts value by value.
#: How each float kind is loaded: for the check (``%cp`` → float ``%f``, double for float64), for the sums
#: (``%p`` → float64 ``%x0``).
_UNIT_LOADS = {
    "float32": ("float", ["  %f = load float, float* %cp, align 4"],
                ["  %v = load float, float* %p, align 4", "  %x0 = fpext float %v to double"]),
    "float64": ("double", ["  %f = load double, double* %cp, align 8"], ["  %x0 = load double, double* %p, align 8"]),
    "float16": ("half", ["  %ch = load half, half* %cp, align 2", "  %f = fpext half %ch to float"],
                ["  %v = load half, half* %p, align 2", "  %x0 = fpext half %v to double"]),
    "bfloat16": ("i16", ["  %cb = load i16, i16* %cp, align 2", "  %cbw = zext i16 %cb to i32",
                         "  %cbu = shl i32 %cbw, 16", "  %f = bitcast i32 %cbu to float"],
                 ["  %vb = load i16, i16* %p, align 2", "  %vw = zext i16 %vb to i32", "  %vu = shl i32 %vw, 16",
                  "  %vf = bitcast i32 %vu to float", "  %x0 = fpext float %vf to double"]),
}
#: The results stored to ``res``, in this order (``UnitChunk``), then the row the call stopped at.
_UNIT_RESULTS = ("cnt", "s1", "s2", "s3", "p4", "p6", "p8", "mn", "mx", "nz", "nt", "nl", "ls")
_TINY, _FLUSH = "0x3F10000000000000", "0x3E60000000000000"   # 2^-14, 2^-25 (as double; exact as float too)


def _combine(op: str, out: str, a: str, b: str | tuple[str, str], kind: str, fast: bool = True) -> str:
    flag = "fast " if fast else ""
    if op == "fma":  # a + b[0]·b[1]
        assert isinstance(b, tuple)
        return f"  {out} = call reassoc double @llvm.fmuladd.f64(double {b[0]}, double {b[1]}, double {a})"
    assert isinstance(b, str)
    if op in ("max", "min"):
        return f"  {out} = call {flag}double @llvm.{op}num.f64(double {a}, double {b})"
    if op in ("add", "or"):
        return f"  {out} = {op} {kind} {a}, {b}"
    return f"  {out} = fadd {'reassoc ' if fast else ''}{kind} {a}, {b}"


def _loop(label: str, start: str, stop: str, entry: str, accumulators, body: list[str], exit_label: str,
          results: dict[str, str]) -> list[str]:
    """A counted loop ``label`` over ``%{label}_i`` in [start, stop) (at least one pass) whose accumulators
    ``(name, type, initial, op, term)`` start afresh; ``results[name]`` gets each sum's last value."""
    i = f"%{label}_i"
    lines = [f"{label}:", f"  {i} = phi i64 [{start}, {entry}], [{i}n, %{label}]"]
    lines += [f"  %{label}_{a} = phi {t} [{init}, {entry}], [%{label}_{a}n, %{label}]" for a, t, init, _, _ in accumulators]
    lines += [line.replace("%I", i) for line in body]
    for a, t, _, op, term in accumulators:
        lines.append(_combine(op, f"%{label}_{a}n", f"%{label}_{a}", term, t))
        results[a] = f"%{label}_{a}n"
    lines += [f"  {i}n = add nsw i64 {i}, 1", f"  %{label}_more = icmp slt i64 {i}n, {stop}",
              f"  br i1 %{label}_more, label %{label}, label {exit_label}"]
    return lines


def _units(kind: str, deq: str, ocol: bool, icol: bool, full: bool = False) -> str:
    """IR of ``units_{kind}_{deq}_{o}{i}[_full]``: see above; ``deq`` none (floats), block (a scale per block
    of a row) or col (a scale per column)."""
    floats = kind in _UNIT_LOADS
    if floats:
        elem, check_load, load = _UNIT_LOADS[kind]
        per = 1
        full = False
    else:
        elem, load, per = _CODES[kind]
    name = f"units_{kind}_{deq}_{'c' if ocol else 'r'}{'c' if icol else 'r'}{'_full' if full else ''}"
    body = ["  %at = add nsw i64 %pb, %I", f"  %p = getelementptr inbounds {elem}, {elem}* %q, i64 %at", *load,
            "  %je = add nsw i64 %jb, %I", f"  %col0 = mul nsw i64 %je, {per}"]
    sums = [("s1", "double", "0.0", "fadd"), ("s2", "double", "0.0", "fadd"), ("s3", "double", "0.0", "fadd"),
            ("p4", "double", "0.0", "fadd"), ("p6", "double", "0.0", "fadd"), ("p8", "double", "0.0", "fadd"),
            ("mn", "double", _INF, "min"), ("mx", "double", _NINF, "max")]
    if not floats:
        sums.append(("nz", "i64", "0", "add"))
    if full:
        sums += [("nt", "i64", "0", "add"), ("nl", "i64", "0", "add"), ("ls", "double", "0.0", "fadd")]
    accumulators = []
    for k in range(per):
        if k:
            body.append(f"  %col{k} = add nsw i64 %col0, {k}")
        if deq == "col":
            body += [f"  %sp{k} = getelementptr inbounds double, double* %scale, i64 %col{k}",
                     f"  %s{k} = load double, double* %sp{k}",
                     f"  %zp{k} = getelementptr inbounds double, double* %zero, i64 %col{k}",
                     f"  %z{k} = load double, double* %zp{k}"]
        if deq != "none":
            sc, zc = (f"%s{k}", f"%z{k}") if deq == "col" else ("%sb", "%zb")
            body += [f"  %d{k} = fsub double %c{k}, {zc}", f"  %x{k} = fmul double %d{k}, {sc}"]
        body += [f"  %y2{k} = fmul double %x{k}, %x{k}", f"  %y4{k} = fmul double %y2{k}, %y2{k}"]
        # Σy³, Σy⁶, Σy⁸ as fused multiply-adds (one rounding fewer; ~10 % faster)
        terms = {"s1": f"%x{k}", "s2": f"%y2{k}", "s3": (f"%y2{k}", f"%x{k}"), "p4": f"%y4{k}",
                 "p6": (f"%y4{k}", f"%y2{k}"), "p8": (f"%y4{k}", f"%y4{k}"), "mn": f"%x{k}", "mx": f"%x{k}",
                 "nz": f"%wz{k}", "nt": f"%wt{k}", "nl": f"%wl{k}", "ls": f"%lq{k}"}
        if not floats:
            body += [f"  %iz{k} = fcmp oeq double %x{k}, 0.0", f"  %wz{k} = zext i1 %iz{k} to i64"]
        if full:
            body += [f"  %b{k} = call double @llvm.fabs.f64(double %x{k})",
                     f"  %it{k} = fcmp olt double %b{k}, {_TINY}", f"  %wt{k} = zext i1 %it{k} to i64",
                     f"  %il{k} = fcmp olt double %b{k}, {_FLUSH}", f"  %wl{k} = zext i1 %il{k} to i64",
                     f"  %lq{k} = select i1 %il{k}, double %y2{k}, double 0.0"]
        for on, unit, arrays in ((ocol, "%o", (("osq", f"%y2{k}"), ("osum", f"%x{k}"))),
                                 (icol, "%i", (("isq", f"%y2{k}"),))):
            if not on:
                continue
            body.append(f"  %u{unit[1]}{k} = add nsw i64 {unit}, %col{k}")
            for array, value in arrays:
                body += [f"  %{array}p{k} = getelementptr inbounds double, double* %{array}, i64 %u{unit[1]}{k}",
                         f"  %{array}v{k} = load double, double* %{array}p{k}",
                         f"  %{array}n{k} = fadd double %{array}v{k}, {value}",
                         f"  store double %{array}n{k}, double* %{array}p{k}"]
        accumulators += [(f"{a}{k}" if per > 1 else a, t, init, "fma" if isinstance(terms[a], tuple) else op, terms[a])
                         for a, t, init, op in sums]
    if per > 1:  # the per-code sums, combined after the loop
        pass
    # every sum of the row (r_*) and of the call (g_*), counts included
    row_sums = [("cnt", "i64", "0", "add"), *[(a, t, init, op) for a, t, init, op in sums]]
    if floats or not full:
        row_sums += [(a, t, init, op) for a, t, init, op in (("nz", "i64", "0", "add"), ("nt", "i64", "0", "add"),
                                                            ("nl", "i64", "0", "add"), ("ls", "double", "0.0", "fadd"))
                     if a not in {s[0] for s in sums}]
    pre: list[str] = []
    if floats:  # the chunk's values read once as float: NaN or Inf (then nothing is summed), the counts
        ftype = "double" if kind == "float64" else "float"
        fsuffix = "f64" if kind == "float64" else "f32"
        check = [f"  %cp = getelementptr inbounds {elem}, {elem}* %q, i64 %I", *check_load,
                 f"  %fa = call {ftype} @llvm.fabs.{fsuffix}({ftype} %f)",
                 f"  %fbad = fcmp ueq {ftype} %fa, {_INF}", "  %fbi = zext i1 %fbad to i32",
                 f"  %fz = fcmp oeq {ftype} %fa, 0.0", "  %fzi = zext i1 %fz to i32",
                 f"  %ft = fcmp olt {ftype} %fa, {_TINY}", "  %fti = zext i1 %ft to i32",
                 f"  %fl = fcmp olt {ftype} %fa, {_FLUSH}", "  %fli = zext i1 %fl to i32"]
        counted: dict[str, str] = {}
        pre += ["prep:", "  %lastrow = mul nsw i64 %last, %stride", "  %tail = sub nsw i64 %cend, %cfirst",
                "  %n = add nsw i64 %lastrow, %tail", "  br label %check",
                *_loop("check", "0", "%n", "%prep", [
                    ("bad", "i32", "0", "or", "%fbi"), ("z", "i32", "0", "add", "%fzi"),
                    ("t", "i32", "0", "add", "%fti"), ("l", "i32", "0", "add", "%fli")], check, "%checked", counted)]
        # (32-bit counts: one call reads one chunk, far below 2^31 values)
        pre += ["checked:", f"  %bad = icmp ne i32 {counted['bad']}, 0", "  br i1 %bad, label %done, label %checklost",
                "checklost:", f"  %cz = zext i32 {counted['z']} to i64", f"  %ct = zext i32 {counted['t']} to i64",
                f"  %cl = zext i32 {counted['l']} to i64", "  %lostnz = icmp ugt i64 %cl, %cz",
                "  br i1 %lostnz, label %lost, label %checkok"]
        lost = [f"  %lp = getelementptr inbounds {elem}, {elem}* %q, i64 %I",
                *[line.replace("%p,", "%lp,").replace("%v", "%lv").replace("%x0", "%lx") for line in load],
                "  %lb = call double @llvm.fabs.f64(double %lx)", f"  %lin = fcmp olt double %lb, {_FLUSH}",
                "  %lsq = fmul double %lx, %lx", "  %lterm = select i1 %lin, double %lsq, double 0.0"]
        lost_sums: dict[str, str] = {}
        pre += _loop("lost", "0", "%n", "%checklost", [("s", "double", "0.0", "fadd", "%lterm")], lost, "%checkok",
                     lost_sums)
        pre += ["checkok:", f"  %chunkls = phi double [0.0, %checklost], [{lost_sums['s']}, %lost]",
                f"  br label {'%row' if deq == 'block' else '%tile'}"]
        counts = {"nz": "%cz", "nt": "%ct", "nl": "%cl", "ls": "%chunkls"}
    start = "%checkok" if floats else "%entry"
    lines = [
        f"define void @{name}({elem}* noalias nocapture readonly %q, i64 %rows, i64 %stride, i64 %cfirst, i64 %cend,",
        "    i64 %nb, i64 %bw, double* noalias nocapture readonly %scale, double* noalias nocapture readonly %zero,",
        "    i64* noalias nocapture readonly %oid, i64* noalias nocapture readonly %iid, i64 %flags,",
        "    double* noalias nocapture %osq, double* noalias nocapture %osum, double* noalias nocapture %isq,",
        "    double* noalias nocapture %res) {",
        "entry:", "  %any = icmp sgt i64 %rows, 0", "  %last = sub nsw i64 %rows, 1",
        "  %orow = and i64 %flags, 1", "  %irow = and i64 %flags, 2",
        f"  br i1 %any, label {'%prep' if floats else '%row' if deq == 'block' else '%tile'}, label %done",
        *pre,
    ]
    row_head = ["  %opp = getelementptr inbounds i64, i64* %oid, i64 %r", "  %o = load i64, i64* %opp",
                "  %ipp = getelementptr inbounds i64, i64* %iid, i64 %r", "  %i = load i64, i64* %ipp",
                "  %rs = mul nsw i64 %r, %stride", "  %pb0 = sub nsw i64 %rs, %cfirst",
                "  %isfirst = icmp eq i64 %r, 0", "  %islast = icmp eq i64 %r, %last"]
    elem_sums: dict[str, str] = {}

    def fold(prefix: str, base: str | None) -> list[str]:
        """``{prefix}_a`` = ``{base}_a`` (None: nothing yet) + the element loop's sums (each code position's,
        when a byte holds two)."""
        out = []
        for a, t, init, op in sums:
            value = f"{base}_{a}" if base is not None else init
            for index in range(per):
                result = f"{prefix}_{a}" if index == per - 1 else f"{prefix}p_{a}{index}"
                out.append(_combine(op, result, value, elem_sums[f"{a}{index}" if per > 1 else a], t, fast=False))
                value = result
        return out

    def row_stores(s1: str, s2: str, after: str) -> list[str]:
        return [
            "  %doo = icmp ne i64 %orow, 0", "  br i1 %doo, label %ostore, label %icheck",
            "ostore:",
            "  %oqp = getelementptr inbounds double, double* %osq, i64 %o", "  %oqv = load double, double* %oqp",
            f"  %oqn = fadd double %oqv, {s2}", "  store double %oqn, double* %oqp",
            "  %osp = getelementptr inbounds double, double* %osum, i64 %o", "  %osv = load double, double* %osp",
            f"  %osn = fadd double %osv, {s1}", "  store double %osn, double* %osp",
            "  br label %icheck",
            "icheck:", "  %doi = icmp ne i64 %irow, 0", f"  br i1 %doi, label %istore, label {after}",
            "istore:",
            "  %iqp = getelementptr inbounds double, double* %isq, i64 %i", "  %iqv = load double, double* %iqp",
            f"  %iqn = fadd double %iqv, {s2}", "  store double %iqn, double* %iqp",
            f"  br label {after}"]

    # what a row adds to the call's sums besides the element loop's: the count, and the counts the loop
    # does not take (floats: the check took them; scales all ≥ 2^-14: the zero count)
    extra = {"nz": "0", "nt": "0", "nl": "0", "ls": "0.0"} if floats else \
        {} if full else {"nt": "%R_nz", "nl": "%R_nz", "ls": "0.0"}
    if deq == "block":  # rows → blocks (a scale each) → elements; chunks of whole rows
        lines += [
            "row:", f"  %r = phi i64 [0, {start}], [%rn, %rowlatch]",
            *[f"  %g_{a} = phi {t} [{init}, {start}], [%gn_{a}, %rowlatch]" for a, t, init, _ in row_sums],
            *row_head, "  %lo = select i1 %isfirst, i64 %cfirst, i64 0", "  %hi = select i1 %islast, i64 %cend, i64 %bw",
            "  %rnb = mul nsw i64 %r, %nb", "  %span = sub nsw i64 %hi, %lo", f"  %spanv = mul nsw i64 %span, {per}",
            "  br label %blk",
            "blk:", "  %j = phi i64 [0, %row], [%jn, %blkend]",
            *[f"  %r_{a} = phi {t} [{init}, %row], [%R_{a}, %blkend]" for a, t, init, _ in
              [("cnt", "i64", "0", "add"), *sums]],
            "  %jb = mul nsw i64 %j, %bw", "  %pb = add nsw i64 %pb0, %jb",
            "  %bi = add nsw i64 %rnb, %j", "  %sbp = getelementptr inbounds double, double* %scale, i64 %bi",
            "  %sb = load double, double* %sbp", "  %zbp = getelementptr inbounds double, double* %zero, i64 %bi",
            "  %zb = load double, double* %zbp", "  br label %elem",
            *_loop("elem", "%lo", "%hi", "%blk", accumulators, body, "%blkend", elem_sums),
            "blkend:", "  %R_cnt = add i64 %r_cnt, %spanv", *fold("%R", "%r"),
            "  %jn = add nsw i64 %j, 1", "  %jmore = icmp slt i64 %jn, %nb", "  br i1 %jmore, label %blk, label %rowend",
            "rowend:",
            *[_combine(op, f"%gn_{a}", f"%g_{a}", extra.get(a, f"%R_{a}"), t, fast=False) for a, t, _, op in row_sums],
            *row_stores("%R_s1", "%R_s2", "%rowlatch"),
            "rowlatch:", "  %rn = add nsw i64 %r, 1", "  %rmore = icmp slt i64 %rn, %rows",
            "  br i1 %rmore, label %row, label %done"]
        final = ("%gn", "%rowlatch")
    else:
        # tiles of ``bw`` columns → rows → elements: very wide rows are taken a tile of columns at a time
        # over all the chunk's rows, so that the tile's unit sums stay in the cache (``units.TILE``)
        lines += [
            "tile:", f"  %t = phi i64 [0, {start}], [%tn, %tilelatch]",
            *[f"  %g_{a} = phi {t} [{init}, {start}], [%hl_{a}, %tilelatch]" for a, t, init, _ in row_sums],
            "  %tlo = mul nsw i64 %t, %bw", "  %thi0 = add nsw i64 %tlo, %bw", "  %tin = icmp slt i64 %thi0, %stride",
            "  %thi = select i1 %tin, i64 %thi0, i64 %stride", "  br label %row",
            "row:", "  %r = phi i64 [0, %tile], [%rn, %rowlatch]",
            *[f"  %h_{a} = phi {t} [%g_{a}, %tile], [%hl_{a}, %rowlatch]" for a, t, _, _ in row_sums],
            *row_head, "  %lor = select i1 %isfirst, i64 %cfirst, i64 0",
            "  %hir = select i1 %islast, i64 %cend, i64 %stride",
            "  %lot = icmp sgt i64 %lor, %tlo", "  %lo = select i1 %lot, i64 %lor, i64 %tlo",
            "  %hit = icmp slt i64 %hir, %thi", "  %hi = select i1 %hit, i64 %hir, i64 %thi",
            "  %span = sub nsw i64 %hi, %lo", f"  %spanv = mul nsw i64 %span, {per}", "  %pb = add nsw i64 %pb0, 0",
            "  %jb = add nsw i64 0, 0", "  %nonempty = icmp sgt i64 %span, 0",
            "  br i1 %nonempty, label %elem, label %rowskip",
            *_loop("elem", "%lo", "%hi", "%row", accumulators, body, "%rowend", elem_sums),
            "rowend:", *fold("%R", None),
            *[_combine(op, f"%hn_{a}", f"%h_{a}", "%spanv" if a == "cnt" else extra.get(a, f"%R_{a}"), t, fast=False)
              for a, t, _, op in row_sums],
            *row_stores("%R_s1", "%R_s2", "%rowdone"),
            "rowdone:", "  br label %rowlatch",
            "rowskip:", "  br label %rowlatch",
            "rowlatch:",
            *[f"  %hl_{a} = phi {t} [%hn_{a}, %rowdone], [%h_{a}, %rowskip]" for a, t, _, _ in row_sums],
            "  %rn = add nsw i64 %r, 1", "  %rmore = icmp slt i64 %rn, %rows",
            "  br i1 %rmore, label %row, label %tilelatch",
            "tilelatch:", "  %tn = add nsw i64 %t, 1", "  %tmore = icmp slt i64 %tn, %nb",
            "  br i1 %tmore, label %tile, label %done"]
        final = ("%hl", "%tilelatch")
    lines += ["done:"]
    stopped = ", [0, %checked]" if floats else ""
    value_of, exit_block = final
    lines += [f"  %x_{a} = phi {t} [{init}, %entry], [{value_of}_{a}, {exit_block}]"
              f"{f', [{init}, %checked]' if floats else ''}" for a, t, init, _ in row_sums]
    lines.append(f"  %x_stop = phi i64 [0, %entry], [%rows, {exit_block}]{stopped}")
    if floats:  # the counts of the check, when the sums were taken
        for a in ("nz", "nt", "nl", "ls"):
            t, nothing = ("double", "0.0") if a == "ls" else ("i64", "0")
            lines.append(f"  %y_{a} = phi {t} [{nothing}, %entry], [{counts[a]}, {exit_block}], [{nothing}, %checked]")
    types = {a: t for a, t, _, _ in row_sums}
    for index, a in enumerate((*_UNIT_RESULTS, "stop")):
        value = f"%y_{a}" if floats and a in ("nz", "nt", "nl", "ls") else f"%x_{a}"
        if types.get(a, "i64") == "i64":
            lines.append(f"  %xd_{a} = sitofp i64 {value} to double")
            value = f"%xd_{a}"
        lines += [f"  %rq_{a} = getelementptr double, double* %res, i64 {index}", f"  store double {value}, double* %rq_{a}"]
    lines += ["  ret void", "}", ""]
    return "\n".join(lines)


_SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_void_p)
_UNITS_SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, *[ctypes.c_int64] * 6, ctypes.c_void_p, ctypes.c_void_p,
                                    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, *[ctypes.c_void_p] * 4)
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
        self.unit_out = np.empty(len(_UNIT_RESULTS) + 1, np.float64)

    def function(self, name: str) -> Callable[..., None]:
        function = self.functions.get(name)
        if function is None:
            llvm = self.llvm
            shape, _, kind = name.partition("_")
            if shape == "sums":
                elem, load = _LOADS[kind]
                source, signature = _TEMPLATE.format(name=kind, elem=elem, load=load), _SIGNATURE
            elif shape == "units":
                full = kind.endswith("_full")
                value_kind, deq, sides = kind.removesuffix("_full").rsplit("_", 2)
                source, signature = _units(value_kind, deq, sides[0] == "c", sides[1] == "c", full), _UNITS_SIGNATURE
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


class UnitChunk(NamedTuple):
    """What one ``unit_grid`` call summed besides the per-unit arrays, over the rows before ``stop``."""

    n: int            # values
    s1: float         # Σy, Σy², Σy³ (with p4, the moments' power sums about 0)
    s2: float
    s3: float
    p4: float         # Σy⁴, Σy⁶, Σy⁸
    p6: float
    p8: float
    lo: float
    hi: float
    zeros: int        # y == 0
    tiny: int         # |y| < 2^-14 (zeros included)
    lost: int         # |y| < 2^-25 (zeros included)
    lost_sq: float    # Σy² of those
    stop: int         # ``rows``, or 0: floats holding NaN or Inf, nothing summed


#: The unit kernel's value kinds by numpy dtype (floats) or code dtype (with a dequantization).
_UNIT_FLOAT_KINDS = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64", np.dtype(np.float16): "float16"}


def unit_kind(values: np.ndarray, dequantized: bool, packed4: bool = False, bfloat16: bool = False) -> str | None:
    """The unit kernel's name for how ``values`` are loaded, or None when it does not read them."""
    if packed4:
        return "uint4x2" if values.dtype == np.uint8 else None
    if bfloat16:
        return "bfloat16" if values.dtype == np.uint16 else None
    return _CODE_KINDS.get(values.dtype) if dequantized else _UNIT_FLOAT_KINDS.get(values.dtype)


def unit_function(kind: str, deq: str, ocol: bool, icol: bool, full: bool = False) -> str:
    """The name of the unit kernel for values of ``kind`` read ``deq``-wise, with these unit columns."""
    return f"units_{kind}_{deq}_{'c' if ocol else 'r'}{'c' if icol else 'r'}{'_full' if full and deq != 'none' else ''}"


def compile_now(names: set[str]) -> None:
    """Compile these kernels now (before worker processes fork: they inherit them, and none of them
    loads LLVM's code again or compiles the same loop)."""
    for name in sorted(names):
        _function(name)


def unit_grid(values: np.ndarray, kind: str, deq: str, rows: int, stride: int, c0: int, cend: int, nb: int, bw: int,
              scale: np.ndarray, zero: np.ndarray, oid: np.ndarray, iid: np.ndarray, flags: int,
              ocol: bool, icol: bool, osq: np.ndarray, osum: np.ndarray, isq: np.ndarray,
              full: bool = False) -> UnitChunk | None:
    """One compiled pass of the unit sums over a grid of ``values`` (see the IR above), or None when the
    accelerator is not ready.  The caller guarantees the shapes: ``values`` contiguous, holding
    ``(rows - 1)·stride - c0 + cend`` stored elements (whole rows of ``nb`` blocks of ``bw`` when
    ``deq`` is block), ``oid``/``iid`` int64 of ``rows``, ``scale``/``zero`` float64, the unit arrays
    float64 and long enough for every unit addressed."""
    function = _function(unit_function(kind, deq, ocol, icol, full))
    if function is None:
        return None
    for array, dtype in ((values, None), (scale, np.float64), (zero, np.float64), (oid, np.int64), (iid, np.int64),
                         (osq, np.float64), (osum, np.float64), (isq, np.float64)):
        if not array.flags.c_contiguous or (dtype is not None and array.dtype != dtype):
            raise ValueError(f"unit_grid: an argument of type {array.dtype} is not contiguous {dtype}")
    assert _COMPILED is not None
    out = _COMPILED.unit_out
    function(values.ctypes.data, rows, stride, c0, cend, nb, bw, scale.ctypes.data, zero.ctypes.data,
             oid.ctypes.data, iid.ctypes.data, flags, osq.ctypes.data, osum.ctypes.data, isq.ctypes.data,
             out.ctypes.data)
    cnt, s1, s2, s3, p4, p6, p8, lo, hi, nz, nt, nl, ls, stop = out.tolist()
    return UnitChunk(int(cnt), s1, s2, s3, p4, p6, p8, lo, hi, int(nz), int(nt), int(nl), ls, int(stop))
