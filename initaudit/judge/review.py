"""The trained-model review: statistics that tell a trained layer from a fresh draw, and what breaks.

Pure functions of a layer's ``UnitSums`` (per-output-unit sums of squares and the tensor's
raw power sums), its ``TensorStats`` and its fans; no graph, no I/O.  Background and the
thresholds' origin: docs/trained-review.md and the shared reference
trained-review.md.

* Never trained (IA401): for i.i.d. values with E[w²] = m₂, the sum of squares
  S = Σ w² of one unit of n values has variance n·Var(w²) and excess kurtosis κ(w²)/n.  The
  dispersion D = s²(S) / (n·Var(w²)) over the R units is ≈ 1 for a fresh draw of *any*
  distribution, a scaled χ²_ν/ν with ν = 2 / (2/(R−1) + κ_S/R); z is its Wilson–Hilferty
  normal equivalent.  The same test runs over the input units (the other side).  A trained layer's units differ far more
  (D ≫ 1).  A layer is called never trained when z is within ±Z_IID, its values fit an
  init family (uniform, normal, truncated normal) and its variance is that of a known init
  scheme within sampling noise — and, measured on those candidates only, no singular value
  stands out of the bulk a fresh draw allows: the largest singular value σ₁ of the weight as
  an r × c matrix stays below the Marchenko–Pastur edge rms·(√r + √c) plus a Tracy–Widom
  margin (``spectral_limit``).  Training adds low-rank structure on top of the init, which
  pushes σ₁ out of the bulk while the units' norms and the value distribution still look fresh.
* Dead units (IA402): units whose norm is zero or below DEAD_RELATIVE × the median unit norm.
* Value outliers (IA404): per-tensor symmetric int8 uses a step of 2·max|w|/255; the
  signal-to-quantization-noise ratio SQNR ≈ 10·log10(12·E[w²]/step²) dB.
* float16 flush (IA207): non-zero values below 2^-25 become 0 in float16.
* Scale outliers between comparable layers (IA403): ``scale_outliers`` over the model.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from initaudit.findings import Finding, finding
from initaudit.judge.bands import consistent
from initaudit.judge.schemes import INIT_FAMILIES, SCHEME
from initaudit.judge.verdict import SHIFT_NOISE_Z, matches
from initaudit.measure.spectrum import Spectrum
from initaudit.measure.stats import TensorStats
from initaudit.measure.units import UnitSums
from initaudit.trace.fans import Fans

#: |z| of the unit-norm dispersion within which a layer is consistent with an i.i.d. draw.
Z_IID = 4.0
#: Tracy–Widom units above the Marchenko–Pastur edge within which σ₁ is a fresh draw's.  σ₁/edge − 1
#: in units of (1/√r + 1/√c)^⅓ / (2(√r + √c)) is TW₁-distributed for large r, c (mean −1.2, 99.99 %
#: quantile ≈ 4.5); in 120,000 simulated normal draws of 6 shapes from 8×8 to 64×64 the largest was 4.0,
#: in 10,800 draws of 16 shapes up to 512×512 (normal, uniform, truncated normal) 3.5.
SPECTRAL_TW = 6.0
#: Fewer units or values than this: the dispersion says too little to call a layer fresh.
MIN_UNITS = 8
MIN_VALUES = 4096
#: A unit is dead when its norm is below this fraction of the layer's median unit norm.
DEAD_RELATIVE = 1e-3
#: Dead units: info below this fraction of a layer's units, warn from it on — counting the units whose
#: weights are all exactly zero.  Units that decayed to a tiny but non-zero norm are what weight decay
#: leaves of units a ReLU switched off during training (the published PP-OCRv5/v6 detectors hold layers
#: with a third of their units at 1e-7 × the median): an info.  A channel zeroed by a conversion, a merge
#: or a quantizer (codes at the zero point) is exactly zero.
DEAD_WARN_FRACTION = 0.10
#: Per-tensor int8 SQNR (dB) of the other values below which one value crushes the rest of the layer:
#: max|w| > 883× the others' rms.  The worst healthy published layer seen keeps +2.1 dB (349×).
SQNR_WARN_DB = -6.0
#: Share of a layer's energy (Σ w²) carried by values float16 flushes to zero that is worth a warning.
FLUSH_WARN_ENERGY = 1e-3
#: Robust z (Iglewicz–Hoaglin modified z) of a layer's log gain among comparable layers ...
SCALE_OUTLIER_Z = 3.5
#: ... and at least this factor from their median.  Heads, stems, SE blocks and pruned layers of
#: healthy published models sit up to 28× from their peers; a flag this close to healthy spreads
#: would also come and go when one peer changes.
SCALE_OUTLIER_FACTOR = 100.0
SCALE_MIN_GROUP = 5
#: Variances of fixed-std inits (Hugging Face's `initializer_range` default 0.02).
FIXED_STDS = (0.02,)

#: IA204 in the trained profile, on the whole layer: |mean|/σ of a layer of several output units beyond
#: which its values are shifted as a whole (a constant added by a conversion, a wrong zero point).  The
#: healthy published models (docs/trained-review.md, 47 models, 2,153 weights) keep within 0.95 σ
#: (learned upsamplers, classifier heads whose units all lean one way): the bar is twice that.  A layer
#: of one output unit is one vector, whose mean is its direction (detection heads at 1.66 σ, a fixed
#: 3-tap kernel at 6.4 σ): not judged.
SHIFT_UNITS = 2.0
#: IA204 on the units: a unit is shifted when its mean is beyond this many of its own σ ...
SHIFT_UNIT_SIGMAS = 2.0
#: ... and the layer is, when this share of its output units (at least SHIFT_MIN_UNITS) is shifted to the
#: same side.  A wrong zero point on every channel of a per-channel int8 weight moves each channel by about
#: its own max|w|, while the channels' different scales keep the whole layer's |mean|/σ small.  Healthy
#: published layers hold at most 53 % of their units there (wired-table-rec's `reg.0`, half of whose
#: units were pruned to a common −0.0075; 36 % on the 15 models of the first survey).  Units of fewer
#: values than SHIFT_UNIT_VALUES (3×3 depthwise kernels: the 25th percentile of their |mean|/σ reaches
#: 2.3 on healthy layers, against 0.92 from 16 values on) are too noisy to count.
SHIFT_UNIT_SHARE = 0.75
SHIFT_UNIT_VALUES = 16
SHIFT_MIN_UNITS = 8


@dataclass(frozen=True)
class Dispersion:
    d: float          # s²(S) / (n·Var(w²)): ≈ 1 for an i.i.d. draw
    z: float
    p: float          # two-sided


@dataclass(frozen=True)
class Review:
    """A layer's trained-review evidence (JSON ``review``)."""

    units: int
    per_unit: int
    dispersion: Dispersion | None
    input_dispersion: Dispersion | None   # the same over input units (rows of the other side)
    schemes: tuple[str, ...]          # init schemes whose variance the layer's matches
    family: str
    fresh: bool                       # the never-trained verdict
    dead: int
    dead_indices: tuple[int, ...]
    sqnr_int8_db: float | None
    max_over_rms: float | None
    float16_flushed: int
    float16_subnormal: int
    log_gain: float | None            # log10(rms · √fan_in): the layer's scale, comparable across layers
    scale_z: float | None = None      # filled in across the model
    scale_group: int = 0              # how many comparable layers the scale was held against
    scale_offset: float | None = None  # log10 distance from their median scale
    input_scale: float = 1.0          # a stored scalar the layer's input is multiplied by (in log_gain)
    dead_zero: int = 0                # dead units whose weights are all exactly zero
    shifted: int = 0                  # output units whose mean is beyond SHIFT_UNIT_SIGMAS of their own σ (IA204)
    spectrum: Spectrum | None = None  # the fresh candidate's largest singular value (None: not measured)
    spectrum_limit: float | None = None  # the σ₁ / edge a fresh draw of the tested block stays below

    @property
    def spectrum_ratio(self) -> float | None:
        """σ₁ of the tested block over its Marchenko–Pastur edge rms·(√rows + √cols)."""
        s = self.spectrum
        return None if s is None else s.top / (s.rms * (math.sqrt(s.rows) + math.sqrt(s.cols)))


def dispersion(sums: UnitSums, side: str = "out") -> Dispersion | None:
    """The unit-norm dispersion test (module docstring) over output (or input) units."""
    unit_sq = sums.unit_sq if side == "out" else sums.in_sq
    r, n = (sums.units, sums.per_unit) if side == "out" else (sums.in_units, sums.in_per_unit)
    if unit_sq is None or r < 2 or n < 1 or sums.count == 0:
        return None
    m2, m4, m6, m8 = (p / sums.count for p in sums.power)
    var_y = m4 - m2 * m2
    if not var_y > 0 or not math.isfinite(m8):
        return None
    central4 = m8 - 4 * m2 * m6 + 6 * m2 * m2 * m4 - 3 * m2 ** 4
    kurt_y = central4 / (var_y * var_y) - 3.0
    s2 = float(np.var(unit_sq, ddof=1))
    d = s2 / (n * var_y)
    # s² of R sums with excess kurtosis κ(w²)/n: Var(s²)/V² ≈ 2/(R−1) + κ(w²)/(n·R), a scaled χ² with
    # ν = 2/that degrees of freedom; z from its Wilson–Hilferty cube-root normal approximation.
    spread = max(2.0 / (r - 1) + kurt_y / n / r, 1e-12)
    nu = 2.0 / spread
    c = 2.0 / (9.0 * nu)
    z = (d ** (1.0 / 3.0) - (1.0 - c)) / math.sqrt(c)
    return Dispersion(d, z, math.erfc(abs(z) / math.sqrt(2.0)))


def init_schemes(stats: TensorStats, fans: dict[str, Fans] | None, scale: float = 1.0,
                 family: str | None = None) -> tuple[str, ...]:
    """Known init schemes (under any fan convention) whose variance the layer's is consistent with.

    With ``family``, a scheme is listed only if it draws from that family (PyTorch's
    default is uniform; a fixed-std init normal or truncated normal).
    """
    if stats.count < 2 or not stats.var > 0:
        return ()
    var = stats.var * scale * scale
    found: list[str] = []
    for f in (fans or {}).values():
        for scheme in matches(stats, f, scale):
            if scheme == "other" or scheme in found or (family and family not in SCHEME[scheme].families):
                continue
            found.append(scheme)
    for std in FIXED_STDS:
        if family in ("uniform",):
            continue
        if consistent(var / (std * std), stats.count, stats.excess_kurtosis):
            found.append(f"std_{std:g}")
    return tuple(found)


def spectral_limit(rows: int, cols: int) -> float:
    """The σ₁ / Marchenko–Pastur edge below which an r × c i.i.d. draw stays (``SPECTRAL_TW``)."""
    root_r, root_c = math.sqrt(rows), math.sqrt(cols)
    return 1.0 + SPECTRAL_TW * (1.0 / root_r + 1.0 / root_c) ** (1.0 / 3.0) / (2.0 * (root_r + root_c))


def with_spectrum(review: Review, spectrum: Spectrum | None) -> Review:
    """A fresh candidate's spectral evidence: it stays fresh only if σ₁ stays in the bulk."""
    if spectrum is None:
        return review
    limit = spectral_limit(spectrum.rows, spectrum.cols)
    checked = replace(review, spectrum=spectrum, spectrum_limit=limit)
    ratio = checked.spectrum_ratio
    return replace(checked, fresh=review.fresh and ratio is not None and ratio <= limit)


def dead_units(unit_sq: np.ndarray) -> np.ndarray:
    """Indices of units whose norm is zero or negligible against the median unit norm."""
    if unit_sq.size == 0:
        return np.zeros(0, np.int64)
    median = float(np.median(unit_sq))
    limit = median * DEAD_RELATIVE ** 2
    return np.flatnonzero((unit_sq == 0) | (unit_sq < limit))


def int8_sqnr(sums: UnitSums) -> tuple[float | None, float | None]:
    """(estimated per-tensor int8 SQNR of the other values in dB, max|w| / their rms).

    The rms leaves the largest value out (Σw² − max²), so that one huge value does not
    inflate the spread it is compared with (with it, max/rms can never exceed √n).
    """
    if sums.count < 2 or not sums.power[0] > 0 or not math.isfinite(sums.max_abs):
        return None, None
    rest = (sums.power[0] - sums.max_abs ** 2) / (sums.count - 1)
    if not rest > 0:
        return None, None
    rms = math.sqrt(rest)
    step = 2.0 * sums.max_abs / 255.0
    return 10.0 * math.log10(12.0 * rms * rms / (step * step)), sums.max_abs / rms


def review_layer(sums: UnitSums, stats: TensorStats, fans: dict[str, Fans] | None, family: str,
                 fan_in: int | None, scale: float = 1.0, input_scale: float = 1.0) -> Review:
    """A layer's evidence; ``scale`` multiplies its weights (Gemm alpha), ``input_scale`` its input (a
    stored scalar before it), and both make its gain on the signal, which IA403 compares."""
    disp = dispersion(sums) if sums.units > 1 else None
    disp_in = dispersion(sums, "in") if sums.in_units >= MIN_UNITS else None
    schemes = init_schemes(stats, fans, scale, family)
    enough = sums.units >= MIN_UNITS and sums.count >= MIN_VALUES
    fresh = bool(enough and disp is not None and abs(disp.z) <= Z_IID and family in INIT_FAMILIES
                 and (disp_in is None or abs(disp_in.z) <= Z_IID) and schemes and stats.nonfinite == 0)
    dead = dead_units(sums.unit_sq) if sums.units > 1 else np.zeros(0, np.int64)
    sqnr, peak = int8_sqnr(sums)
    gain = None
    if fan_in and sums.count and sums.power[0] > 0:
        gain = math.log10(math.sqrt(sums.power[0] / sums.count) * abs(scale * input_scale) * math.sqrt(fan_in))
    return Review(sums.units, sums.per_unit, disp, disp_in, schemes, family, fresh, int(dead.size),
                  tuple(int(i) for i in dead[:8]), sqnr, peak, sums.flushed, sums.subnormal, gain,
                  input_scale=input_scale, dead_zero=int(np.count_nonzero(sums.unit_sq[dead] == 0)),
                  shifted=shifted_units(sums))


def fresh_finding(review: Review, stats: TensorStats) -> Finding | None:
    """IA401: still a fresh draw of a known init scheme."""
    disp = review.dispersion
    if not review.fresh or disp is None:
        return None
    kurt = stats.excess_kurtosis if stats.excess_kurtosis is not None else math.nan
    schemes = ", ".join(SCHEME[s].text if s in SCHEME else s.replace("std_", "N(0, ") + ")" if s.startswith("std_")
                        else s for s in review.schemes)
    return finding("IA401",
                   f"looks never trained: unit-norm dispersion D = {disp.d:.3g} over {review.units} units "
                   f"(z = {disp.z:+.2f}, p = {disp.p:.2g})"
                   + (f", over {review.input_dispersion and sums_note(review)}" if review.input_dispersion else "")
                   + f" as in an i.i.d. draw; {review.family} values "
                   f"(excess kurtosis {kurt:.2f}); variance matches {schemes}" + spectrum_note(review))


def spectrum_note(review: Review) -> str:
    """The spectral evidence in words (empty when the layer was not measured)."""
    s, ratio = review.spectrum, review.spectrum_ratio
    if s is None or ratio is None or review.spectrum_limit is None:
        return ""
    return (f"; largest singular value {ratio:.3f}× the Marchenko–Pastur edge of its {s.rows}×{s.cols} "
            f"{'block' if s.rows * s.cols < review.units * review.per_unit else 'matrix'} "
            f"(a fresh draw stays below {review.spectrum_limit:.3f}×)")


def sums_note(review: Review) -> str:
    inputs = review.input_dispersion
    return "" if inputs is None else f"input units D = {inputs.d:.3g} (z = {inputs.z:+.2f})"


def dead_finding(review: Review, stats: TensorStats) -> Finding | None:
    """IA402: output units that are zero or negligible (not in an all-zero layer: IA202 says it); a warn
    when exactly-zero units reach ``DEAD_WARN_FRACTION`` of the layer, an info otherwise."""
    if review.dead == 0 or review.units < 2 or (stats.total > 0 and stats.zeros == stats.total):
        return None
    fraction = review.dead / review.units
    severity = "warn" if review.dead_zero >= DEAD_WARN_FRACTION * review.units else "info"
    more = ", …" if review.dead > len(review.dead_indices) else ""
    decayed = review.dead - review.dead_zero
    tiny = "decayed to a tiny non-zero norm as weight decay leaves units that stopped learning"
    how = ("all exactly zero" if not decayed else
           f"{review.dead_zero} exactly zero, {decayed} {tiny}" if review.dead_zero else tiny)
    return finding("IA402",
                   f"{review.dead} of {review.units} output units ({fraction:.0%}) are dead (norm below "
                   f"{DEAD_RELATIVE:g}× the median unit norm; {how}), first: "
                   f"{', '.join(map(str, review.dead_indices))}{more}",
                   severity)


def outlier_finding(review: Review, stats: TensorStats) -> Finding | None:
    """IA404: one value so far out that per-tensor int8 loses the rest of the layer."""
    if review.sqnr_int8_db is None or review.sqnr_int8_db >= SQNR_WARN_DB or review.max_over_rms is None:
        return None
    return finding("IA404",
                   f"max |w| is {review.max_over_rms:.3g}× the rms of the other values: per-tensor int8 would "
                   f"keep them at an SQNR of about {review.sqnr_int8_db:.1f} dB (a Gaussian layer keeps ~40 dB); "
                   f"quantize per channel or check that value")


def flush_finding(sums: UnitSums) -> Finding | None:
    """IA207 (``--fp16``): values that float16 rounds to zero, carrying a meaningful share of the layer.

    Tiny values in otherwise normal layers (pruned channels' leftovers) flush harmlessly; what
    matters is the share of the layer's energy Σ w² they carry.
    """
    if not sums.nonzero or not sums.power[0] > 0:
        return None
    energy = sums.flushed_sq / sums.power[0]
    if energy < FLUSH_WARN_ENERGY:
        return None
    return finding("IA207",
                   f"{sums.flushed} of {sums.nonzero} non-zero values ({sums.flushed / sums.nonzero:.1%}), "
                   f"{energy:.1%} of the layer's Σw², are below {2.0 ** -25:.3g} and become 0 in float16 "
                   f"({sums.subnormal} below the smallest normal {2.0 ** -14:.3g})")


def modified_z(values: Sequence[float]) -> list[float | None]:
    """Iglewicz–Hoaglin modified z, 0.6745·(x − median)/MAD; None where MAD is 0."""
    array = np.asarray(values, np.float64)
    median = float(np.median(array))
    mad = float(np.median(np.abs(array - median)))
    if mad == 0:
        return [None] * len(values)
    return [0.6745 * (float(v) - median) / mad for v in array]


def scale_outliers(keys: Sequence[tuple[object, ...]],
                   gains: Sequence[float | None]) -> tuple[list[float | None], list[float | None]]:
    """Each layer's modified z of its log gain among the layers with the same key (op, kernel…),
    and its distance (in log10) from their median."""
    result: list[float | None] = [None] * len(gains)
    offsets: list[float | None] = [None] * len(gains)
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, (key, gain) in enumerate(zip(keys, gains)):
        if gain is not None and math.isfinite(gain):
            groups.setdefault(key, []).append(i)
    for members in groups.values():
        if len(members) < SCALE_MIN_GROUP:
            continue
        values = [gains[i] for i in members]
        median = float(np.median(np.asarray(values, np.float64)))
        for i, z in zip(members, modified_z(values)):  # type: ignore[arg-type]
            result[i] = z
            offsets[i] = gains[i] - median  # type: ignore[operator]
    return result, offsets


def input_note(review: Review) -> str:
    """How the scale figure counts a stored multiplier of the layer's input ('' when there is none)."""
    return "" if review.input_scale == 1.0 else f" × the input's multiplier {review.input_scale:.3g}"


def scale_finding(review: Review, stats: TensorStats) -> Finding | None:
    """IA403: a layer whose scale is far out of line with comparable layers of the model (a layer
    still at its init is IA401's, and its scale was left out of the comparison)."""
    z, offset = review.scale_z, review.scale_offset
    if (review.fresh or z is None or offset is None or review.log_gain is None or abs(z) <= SCALE_OUTLIER_Z
            or abs(offset) < math.log10(SCALE_OUTLIER_FACTOR)):
        return None
    return finding("IA403",
                   f"scale rms·√fan_in{input_note(review)} = {10 ** review.log_gain:.3g} is {10 ** abs(offset):.3g}× "
                   f"{'above' if z > 0 else 'below'} the median of the {review.scale_group} comparable layers of "
                   f"this model (robust z = {z:+.1f}; flagged beyond ±{SCALE_OUTLIER_Z:g} and "
                   f"{SCALE_OUTLIER_FACTOR:g}×)")


def check_notes(review: Review) -> dict[str, str]:
    """What each check of the review found, in words, for the reports."""
    notes: dict[str, str] = {}
    disp = review.dispersion
    if disp is None:
        notes["never trained"] = f"not tested ({review.units} unit{'s' if review.units != 1 else ''})"
    else:
        ratio, limit = review.spectrum_ratio, review.spectrum_limit
        verdict = ("fresh draw: never trained" if review.fresh else
                   "a singular value out of the bulk: trained" if ratio is not None and limit is not None
                   and ratio > limit else
                   "structured: trained" if abs(disp.z) > Z_IID or (
                       review.input_dispersion is not None and abs(review.input_dispersion.z) > Z_IID) else
                   "i.i.d.-like but " + ("no init family" if review.family not in INIT_FAMILIES else
                                         "no init scheme's variance" if not review.schemes else "too small to tell"))
        inputs = review.input_dispersion
        seen_in = f", inputs D = {inputs.d:.3g}, z = {inputs.z:+.3g}" if inputs is not None else ""
        notes["never trained"] = (f"D = {disp.d:.3g} over {review.units} units, z = {disp.z:+.3g}{seen_in}; "
                                  f"{review.family}; schemes {', '.join(review.schemes) or 'none'}"
                                  f"{spectrum_note(review)} → {verdict}")
    if review.units > 1:
        notes["dead units"] = f"{review.dead} of {review.units}" + (
            f" ({review.dead_zero} exactly zero; first: {', '.join(map(str, review.dead_indices))})"
            if review.dead else "")
    if review.scale_z is not None:
        notes["scale vs comparable layers"] = (f"rms·√fan_in{input_note(review)} = {10 ** (review.log_gain or 0):.3g}, "
                                               f"{10 ** (review.scale_offset or 0):.3g}× their median, robust z "
                                               f"{review.scale_z:+.2f} among {review.scale_group} layers")
    elif review.log_gain is not None:
        notes["scale vs comparable layers"] = "fewer than 5 comparable layers: not compared"
    if review.sqnr_int8_db is not None and review.max_over_rms is not None:
        notes["int8 outliers"] = (f"max|w| = {review.max_over_rms:.3g}× the others' rms, per-tensor int8 SQNR ≈ "
                                  f"{review.sqnr_int8_db:.1f} dB")
    notes["float16"] = (f"{review.float16_flushed} values flush to 0, {review.float16_subnormal} subnormal")
    return notes


def shifted_units(sums: UnitSums) -> int:
    """Output units whose mean is beyond SHIFT_UNIT_SIGMAS × their own σ, on the side more of them lean to
    (0 when units are too few or too small to count)."""
    n = sums.per_unit
    if sums.unit_sum is None or sums.units < SHIFT_MIN_UNITS or n < SHIFT_UNIT_VALUES:
        return 0
    mean = sums.unit_sum / n
    spread = np.sqrt(np.maximum(sums.unit_sq / n - mean * mean, 0.0))
    beyond = np.abs(mean) > SHIFT_UNIT_SIGMAS * spread
    return int(max(np.count_nonzero(beyond & (mean > 0)), np.count_nonzero(beyond & (mean < 0))))


def shift_finding(review: Review, stats: TensorStats) -> Finding | None:
    """IA204 (trained, layers of several output units): the layer's mean is further from zero than any healthy
    trained layer's (beyond noise), or most of its output units are shifted the same way, far beyond their
    own spread."""
    if review.units < 2 or stats.count < 2 or not stats.var > 0:
        return None
    shift = abs(stats.mean) / math.sqrt(stats.var)
    if shift > SHIFT_UNITS and shift > SHIFT_NOISE_Z / math.sqrt(stats.count):
        return finding("IA204", f"mean {stats.mean:.4g} is {shift:.2f} σ away from zero ({review.units} output "
                                f"units; healthy trained layers stay within {SHIFT_UNITS:g} σ): a constant added to "
                                f"the whole tensor, or a wrong zero point")
    if review.units >= SHIFT_MIN_UNITS and review.shifted >= SHIFT_UNIT_SHARE * review.units:
        return finding("IA204", f"{review.shifted} of {review.units} output units ({review.shifted / review.units:.0%}) "
                                f"have a mean beyond {SHIFT_UNIT_SIGMAS:g}× their own σ, all on one side (mean of the "
                                f"layer {stats.mean:.4g}, {shift:.2f} σ): a wrong zero point, or a constant added "
                                f"to every unit")
    return None


#: The trained review's per-layer checks, in the order their findings are reported: each is a pure
#: function of the layer's review evidence and statistics, returning a finding or None.  A new
#: check is one function here and its entry in this list (and its code in ``codes.RULES``).
REVIEW_CHECKS: tuple[Callable[[Review, TensorStats], Finding | None], ...] = (
    fresh_finding, dead_finding, scale_finding, outlier_finding, shift_finding)
