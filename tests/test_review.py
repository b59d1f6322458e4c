"""The trained-model review: each statistic against an independent float64 computation, the
never-trained test's false-positive rate on fresh draws against its detection on trained-like
weights, the output axis per op, and a fast planted-defect check on synthetic trained-like models."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from modelkit import model, save, single_op, tensor
from onnx import helper
from test_units import unit_sums_of
from threadpoolctl import threadpool_limits
from trainedkit import conv_chain, trained_convs, trained_like

import initaudit
from initaudit.cli.main import main
from initaudit.judge.review import (
    REVIEW_CHECKS,
    Z_IID,
    Dispersion,
    Review,
    check_notes,
    dead_finding,
    dead_units,
    dispersion,
    flush_finding,
    fresh_finding,
    init_schemes,
    int8_sqnr,
    modified_z,
    outlier_finding,
    review_layer,
    scale_finding,
    scale_outliers,
    shift_finding,
    shifted_units,
    spectral_limit,
    spectrum_note,
    sums_note,
    with_spectrum,
)
from initaudit.judge.verdict import distribution
from initaudit.measure.spectrum import Spectrum, top_singular_value
from initaudit.measure.stats import TensorStats, stats_of
from initaudit.measure.units import UnitSums
from initaudit.trace.fans import Fans


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """As the tool runs its passes: many short dot products, where BLAS threads only spin."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _review(w: np.ndarray, layout: str = "OIHW", fans: Fans | None = None):
    stats = stats_of(w)
    fans = fans or Fans(int(np.prod(w.shape[1:])), w.shape[0] * int(np.prod(w.shape[2:])))
    conventions = {"connectivity": fans, "pytorch": fans, "keras": fans}
    return review_layer(unit_sums_of(w, layout), stats, conventions, distribution(stats), fans.fan_in)


# --- each statistic against numpy, by hand ---------------------------------------------------------


def test_dispersion_equals_the_formula_by_hand():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(40, 30)) * rng.lognormal(0, 0.5, size=(40, 1))
    disp = dispersion(unit_sums_of(w, "OI"))
    s = (w ** 2).sum(axis=1)
    y = (w ** 2).ravel()
    var_y = y.var()
    d = s.var(ddof=1) / (30 * var_y)
    kurt_y = ((y - y.mean()) ** 4).mean() / var_y ** 2 - 3
    nu = 2 / (2 / 39 + kurt_y / 30 / 40)
    z = ((d ** (1 / 3)) - (1 - 2 / (9 * nu))) / math.sqrt(2 / (9 * nu))
    assert disp is not None
    assert disp.d == pytest.approx(d, rel=1e-9) and disp.z == pytest.approx(z, rel=1e-9)
    assert disp.p == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-9)


def test_int8_sqnr_and_float16_flush_by_hand():
    w = np.random.default_rng(3).normal(0, 0.05, size=(64, 64))
    w[0, 0] = 10.0
    w[1, :40] = 1e-9                      # float16 flushes these (below 2^-25)
    sums = unit_sums_of(w, "OI")
    sqnr, peak = int8_sqnr(sums)
    rms = math.sqrt((np.delete(w.ravel(), 0) ** 2).mean())   # the other values
    step = 2 * 10.0 / 255
    assert sqnr == pytest.approx(10 * math.log10(rms ** 2 / (step ** 2 / 12)), rel=1e-9)
    assert peak == pytest.approx(10.0 / rms, rel=1e-9)
    a = np.abs(w)
    assert sums.flushed == int(((a > 0) & (a < 2.0 ** -25)).sum()) == 40
    assert sums.subnormal == int(((a > 0) & (a < 2.0 ** -14)).sum())
    assert flush_finding(sums) is None    # 40 tiny values carry nothing of the layer's energy
    tiny = np.full((16, 16), 2e-8) * np.random.default_rng(4).choice([-1, 1], size=(16, 16))
    finding = flush_finding(unit_sums_of(tiny, "OI"))
    assert finding is not None and finding.code == "IA207" and "256 of 256" in finding.message


def test_dead_units_and_modified_z_by_hand():
    unit_sq = np.array([4.0, 0.0, 5.0, 1e-7, 6.0, 3.0])
    assert list(dead_units(unit_sq)) == [1, 3]
    values = [1.0, 2.0, 3.0, 4.0, 100.0]
    median, mad = 3.0, 1.0
    assert modified_z(values) == pytest.approx([0.6745 * (v - median) / mad for v in values])


# --- the never-trained test: false positives on fresh draws, detection on structured weights ---

def _fresh(rng, scheme: str, shape=(48, 32, 3, 3)) -> np.ndarray:
    fan_in = int(np.prod(shape[1:]))
    if scheme == "torch_default":
        return rng.uniform(-1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in), shape)
    if scheme == "hf_normal":
        return rng.normal(0, 0.02, shape)
    fan_out = shape[0] * int(np.prod(shape[2:]))
    bound = math.sqrt(6 / (fan_in + fan_out))               # Keras glorot_uniform
    return rng.uniform(-bound, bound, shape)


@pytest.mark.parametrize("scheme", ["torch_default", "hf_normal", "glorot_uniform"])
def test_fresh_draws_are_called_never_trained(scheme):
    """Over 200 seeds: |z| beyond Z_IID at most once (expected ~0.01 %), the verdict fresh ≥ 99 %."""
    beyond = fresh = 0
    for seed in range(200):
        review = _review(_fresh(np.random.default_rng(seed), scheme).astype(np.float32))
        assert review.dispersion is not None
        beyond += abs(review.dispersion.z) > Z_IID
        fresh += review.fresh
    assert beyond <= 1
    assert fresh >= 198


def test_z_is_standard_normal_on_fresh_draws():
    zs = [_review(_fresh(np.random.default_rng(1000 + s), "hf_normal").astype(np.float32)).dispersion.z
          for s in range(300)]
    assert abs(np.mean(zs)) < 0.25 and 0.8 < np.std(zs) < 1.25


def test_structured_weights_are_never_called_fresh():
    """Trained-like weights (per-unit scale, low rank, heavy tails), also at a known init's variance."""
    for seed in range(200):
        rng = np.random.default_rng(seed)
        w = trained_like(rng, (48, 32, 3, 3), gain=1 / math.sqrt(3))   # rms of PyTorch's default
        review = _review(w)
        assert not review.fresh
        # heavy tails widen what an i.i.d. draw allows; then the values fit no init family
        assert review.dispersion.z > Z_IID or review.family == "other"
        # with light tails the unit-norm dispersion alone finds the structure
        light = trained_like(rng, (48, 32, 3, 3), gain=1 / math.sqrt(3), tail_df=30)
        assert _review(light).dispersion.z > Z_IID


def test_per_unit_scale_alone_is_structure():
    """Folded BatchNorm on otherwise i.i.d. uniform values: the values fit no family check alone,
    but the unit norms spread far beyond sampling."""
    rng = np.random.default_rng(5)
    w = rng.uniform(-1, 1, (64, 64, 3, 3)) * rng.lognormal(0, 0.3, size=(64, 1, 1, 1))
    review = _review((w / 64).astype(np.float32))
    assert review.dispersion.z > 20 and not review.fresh


# --- the output axis per op, end to end through the tracer -------------------------------------

def _trained(rng, shape, out_axis, in_axis):
    return trained_like(rng, shape, out_axis=out_axis, in_axis=in_axis)


@pytest.mark.parametrize("case", ["conv", "convtranspose_g2", "gemm_transB", "gemm", "matmul", "lstm"])
def test_dead_unit_index_per_op(tmp_path, case):
    rng = np.random.default_rng(6)
    if case == "conv":
        w = _trained(rng, (16, 8, 3, 3), 0, 1)
        w[5] = 0
        m, dead = single_op("Conv", w), 5
    elif case == "convtranspose_g2":
        w = _trained(rng, (16, 8, 3, 3), 1, 0)      # C = 16 (8 per group), M/g = 8
        w[8:, 3] = 0                                # group 1, channel 3 → unit 1·8 + 3
        m, dead = single_op("ConvTranspose", w, group=2), 11
    elif case == "gemm_transB":
        w = _trained(rng, (16, 40), 0, 1)
        w[5] = 0
        m, dead = single_op("Gemm", w, transB=1), 5
    elif case == "gemm":
        w = _trained(rng, (40, 16), 1, 0)
        w[:, 5] = 0
        m, dead = single_op("Gemm", w), 5
    elif case == "matmul":
        w = _trained(rng, (40, 16), 1, 0)
        w[:, 5] = 0
        m, dead = single_op("MatMul", w), 5
    else:
        w = _trained(rng, (1, 32, 16), 1, 2)        # LSTM W [directions, 4H, I], H = 8
        w[0, 5] = 0
        r = _trained(rng, (1, 32, 8), 1, 2)
        node = helper.make_node("LSTM", ["x", "w", "r"], ["y"], name="lstm", hidden_size=8)
        m, dead = model([node], [tensor("w", w), tensor("r", r)]), 5
    units = 32 if case == "lstm" else 16
    report = initaudit.audit(save(m, tmp_path), jobs=1, profile="trained")
    layer = next(x for x in report.models[0].layers if x.name == "w")
    found = [f for f in layer.findings if f.code == "IA402"]
    assert found and f"first: {dead}" in found[0].message and found[0].message.startswith(f"1 of {units} ")


# --- fast planted-defect check on synthetic trained-like models ----------------------------------

DEFECTS = {"torch_default": "IA401", "normal_0.02": "IA401", "dead_quarter": "IA402", "nan": "IA201", "big": "IA206",
           "offset_3": "IA204"}


def _plant(w: np.ndarray, defect: str, rng) -> np.ndarray:
    w = w.copy()
    if defect == "torch_default":
        bound = 1 / math.sqrt(int(np.prod(w.shape[1:])))
        return rng.uniform(-bound, bound, w.shape).astype(np.float32)
    if defect == "normal_0.02":
        return rng.normal(0, 0.02, w.shape).astype(np.float32)
    if defect == "dead_quarter":
        w[rng.choice(w.shape[0], w.shape[0] // 4, replace=False)] = 0
    elif defect == "nan":
        w.flat[rng.integers(w.size)] = np.nan
    elif defect == "offset_3":  # 3 σ added to every value, as a conversion bug would
        w = (w + 3 * w.astype(np.float64).std()).astype(np.float32)
    else:
        w.flat[rng.integers(w.size)] = 1e5
    return w


def _statuses(path, fp16=False):
    layers = initaudit.audit(path, jobs=1, profile="trained", fp16=fp16).models[0].layers
    return {x.name: (x.status, [f.code for f in x.findings]) for x in layers}


@pytest.mark.parametrize("seed", range(4))
def test_planted_defects_on_trained_like_models(tmp_path, seed):
    weights = trained_convs(seed)
    healthy = save(conv_chain(weights), tmp_path, "healthy.onnx")
    before = _statuses(healthy)
    before16 = _statuses(healthy, fp16=True)
    assert all(status != "fail" for status, _ in before.values())
    assert not any("IA401" in codes for _, codes in before.values())
    rng = np.random.default_rng(100 + seed)
    target = f"w{3 + seed % 4}"
    index = int(target[1:])
    for defect, code in DEFECTS.items():
        damaged = list(weights)
        damaged[index] = _plant(weights[index], defect, rng)
        path = save(conv_chain(damaged), tmp_path, f"{defect}.onnx")
        after = _statuses(path, fp16=defect == "big")
        status, codes = after[target]
        assert code in codes, (defect, codes)
        assert status == "fail" if defect == "nan" else status in ("warn", "fail")
        reference = before16 if defect == "big" else before
        assert {n: s for n, (s, _) in after.items() if n != target} == \
               {n: s for n, (s, _) in reference.items() if n != target}


# --- profiles --------------------------------------------------------------------------------------

def test_trained_profile_drops_the_xavier_verdict_but_keeps_the_ratio(tmp_path):
    path = save(conv_chain(trained_convs(7)), tmp_path)
    init = initaudit.audit(path, jobs=1).models[0]
    trained = initaudit.audit(path, jobs=1, profile="trained").models[0]
    assert any(f.code in ("IA101", "IA102") for x in init.layers for f in x.findings)
    assert not any(f.code in ("IA101", "IA102") for x in trained.layers for f in x.findings)
    assert [x.ratio for x in trained.layers] == [x.ratio for x in init.layers]
    assert all(x.review is not None for x in trained.layers)


def test_auto_profile_tells_trained_from_fresh(tmp_path):
    trained = save(conv_chain(trained_convs(8)), tmp_path, "trained.onnx")
    rng = np.random.default_rng(9)
    fresh = save(conv_chain([_fresh(rng, "glorot_uniform", (32, 3 if i == 0 else 32, 3, 3)).astype(np.float32)
                             for i in range(8)]), tmp_path, "fresh.onnx")
    report = initaudit.audit([trained, fresh], jobs=1, profile="auto")
    by_name = {m.path.rsplit("/", 1)[-1]: m for m in report.models}
    assert by_name["trained.onnx"].profile == "trained"
    assert by_name["fresh.onnx"].profile == "init"
    assert "auto: trained" in by_name["trained.onnx"].profile_reason
    assert any(f.code == "IA405" for f in by_name["fresh.onnx"].findings)


def test_init_run_hints_that_a_trained_model_looks_trained(tmp_path):
    path = save(conv_chain(trained_convs(10)), tmp_path)
    findings = initaudit.audit(path, jobs=1).models[0].findings
    assert any(f.code == "IA405" and "--profile trained" in f.message for f in findings)


def test_cli_json_carries_the_review(tmp_path, capsys):
    path = save(conv_chain(trained_convs(11)), tmp_path)
    code = main([str(path), "--profile", "auto", "--format", "json", "-j", "1"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["profile"] == "trained" and out["profile_reason"].startswith("auto: trained")
    review = out["layers"][3]["review"]
    assert review["units"] == 32 and review["never_trained"] is False and review["dispersion"]["z"] > Z_IID
    assert set(review["checks"]) >= {"never trained", "dead units", "int8 outliers", "float16"}


@pytest.mark.parametrize("fmt", ["markdown", "html"])
def test_reports_show_each_check_and_why(tmp_path, capsys, fmt):
    weights = trained_convs(12)
    weights[4] = _plant(weights[4], "dead_quarter", np.random.default_rng(0))
    path = save(conv_chain(weights), tmp_path)
    main([str(path), "--profile", "trained", "--format", fmt, "-j", "1", "--fail-on", "never"])
    out = capsys.readouterr().out
    assert "Trained-model review" in out
    assert "8 of 32 (8 exactly zero; first:" in out       # what the dead-unit check found on w4
    for check in ("never trained", "dead units", "scale vs comparable layers", "int8 outliers", "float16"):
        assert check in out
    assert "median unit norm" in out                        # and why


def test_scale_outlier_among_comparable_layers(tmp_path):
    weights = trained_convs(13)
    weights[5] = weights[5] * 300                    # a folding or unit conversion gone wrong
    report = initaudit.audit(save(conv_chain(weights), tmp_path), jobs=1, profile="trained").models[0]
    flagged = {x.name: [f for f in x.findings if f.code == "IA403"] for x in report.layers}
    assert [name for name, found in flagged.items() if found] == ["w5"]
    message = flagged["w5"][0].message
    gains = [math.log10(math.sqrt(np.mean(w.astype(np.float64) ** 2) * np.prod(w.shape[1:]))) for w in weights]
    factor = 10 ** (gains[5] - float(np.median(gains)))   # all eight are 3×3 convs: one group
    assert f"{factor:.3g}× above the median of the" in message


def test_the_review_runs_every_check_of_its_list_in_order(tmp_path, monkeypatch):
    """A check added to ``REVIEW_CHECKS`` is all it takes for the pipeline to run it on each
    reviewed layer; its finding lands after those of the checks before it."""
    from initaudit.findings import finding
    from initaudit.pipeline import review as pipeline_review

    seen = []

    def planted(review, stats):
        seen.append(review.units)
        return finding("IA403", f"planted check saw {review.units} units")

    w = _trained(np.random.default_rng(7), (16, 8, 3, 3), 0, 1)
    w[5] = 0   # one dead unit of 16: IA402 info, from the check listed before the planted one
    monkeypatch.setattr(pipeline_review, "REVIEW_CHECKS", (*pipeline_review.REVIEW_CHECKS, planted))
    layer = initaudit.audit(save(single_op("Conv", w), tmp_path), profile="trained").models[0].layers[0]
    assert seen == [16]
    codes = [f.code for f in layer.findings]
    assert codes[-1] == "IA403" and layer.findings[-1].message == "planted check saw 16 units"
    assert "IA402" in codes[:-1]


# --- the spectral evidence: lightly trained layers are not fresh, fresh draws stay fresh -----------

def _spectrum_of(w: np.ndarray, rows: int) -> Spectrum:
    """σ₁ by numpy's SVD (independent of the Lanczos estimate the tool uses)."""
    matrix = w.astype(np.float64).reshape(rows, -1)
    return Spectrum(matrix.shape[0], matrix.shape[1], float(np.linalg.svd(matrix, compute_uv=False)[0]),
                    float(np.sqrt(np.mean(matrix ** 2))))


def test_spectral_limit_written_out():
    """1 + 6·(1/√r + 1/√c)^⅓ / (2(√r + √c)), by hand."""
    assert spectral_limit(384, 384) == pytest.approx(1.03577, abs=2e-5)
    assert spectral_limit(64, 576) == pytest.approx(1.05159, abs=2e-5)
    assert spectral_limit(8, 64) == pytest.approx(1.21670, abs=2e-5)


def _lightly_trained(rng, shape, target_ratio):
    """N(0, 0.02) plus a rank-2 update scaled so that σ₁ is ``target_ratio`` × the MP edge."""
    rows, cols = shape
    init = rng.normal(0.0, 0.02, shape)
    u = np.linalg.qr(rng.standard_normal((rows, 2)))[0]
    v = np.linalg.qr(rng.standard_normal((cols, 2)))[0]
    edge = 0.02 * (math.sqrt(rows) + math.sqrt(cols))
    lo, hi = 0.0, 4.0 * edge
    for _ in range(40):                                   # bisection on the update's size
        size = (lo + hi) / 2
        w = init + u @ np.diag([size, 0.7 * size]) @ v.T
        ratio = np.linalg.svd(w, compute_uv=False)[0] / (math.sqrt(np.mean(w ** 2)) * (math.sqrt(rows) + math.sqrt(cols)))
        lo, hi = (size, hi) if ratio < target_ratio else (lo, size)
    return w


@pytest.mark.parametrize("shape, ratio", [((384, 384), 1.19), ((384, 384), 1.1), ((64, 384), 1.1),
                                          ((96, 768), 1.3), ((384, 64), 1.2), ((256, 1152), 1.12), ((1000, 96), 1.2)])
def test_a_lightly_trained_layer_is_not_called_never_trained(shape, ratio):
    """The issue's false alarm: fine-tuned from N(0, 0.02) with a low-rank update, every other test
    sees a fresh draw (unit norms, family, variance); σ₁ out of the bulk says it was trained."""
    w = _lightly_trained(np.random.default_rng(sum(shape)), shape, ratio)
    fans = Fans(shape[1], shape[0])
    review = _review(w, "OI", fans)
    assert review.fresh, "precondition: without the spectrum this layer looks fresh"
    checked = with_spectrum(review, _spectrum_of(w, shape[0]))
    assert not checked.fresh
    assert checked.spectrum_ratio == pytest.approx(ratio, rel=1e-3)
    assert fresh_finding(checked, stats_of(w)) is None
    assert "a singular value out of the bulk: trained" in check_notes(checked)["never trained"]


FRESH_SHAPES = [(8, 64), (16, 144), (32, 288), (48, 288), (64, 64), (64, 576), (128, 128), (96, 384),
                (256, 256), (384, 384), (8, 4096), (1000, 120), (512, 512), (24, 1536)]


def test_fresh_draws_are_never_cleared_by_the_spectrum():
    """14 shapes × 3 init families × 12 seeds: no fresh draw has σ₁ beyond the limit (the spectral
    test adds no false "trained" call to those the other tests make)."""
    cleared = tested = 0
    for shape in FRESH_SHAPES:
        for family in ("torch_default", "hf_normal", "trunc_normal"):
            for seed in range(12):
                rng = np.random.default_rng(seed * 7919 + shape[0] * 31 + shape[1])
                if family == "trunc_normal":
                    w = rng.normal(0.0, 0.02, shape)
                    while (np.abs(w) > 0.04).any():
                        bad = np.abs(w) > 0.04
                        w[bad] = rng.normal(0.0, 0.02, int(bad.sum()))
                else:
                    w = _fresh(rng, family, shape)
                spectrum = Spectrum(shape[0], shape[1], top_singular_value(w), float(np.sqrt(np.mean(w ** 2))))
                tested += 1
                cleared += spectrum.top / (spectrum.rms * (math.sqrt(shape[0]) + math.sqrt(shape[1]))) > \
                    spectral_limit(*shape)
    assert tested == 504 and cleared == 0


def test_the_never_trained_message_gives_the_spectral_figure():
    w = np.random.default_rng(21).normal(0.0, 0.02, (256, 256))
    review = with_spectrum(_review(w, "OI", Fans(256, 256)), _spectrum_of(w, 256))
    assert review.fresh
    message = fresh_finding(review, stats_of(w)).message
    ratio = np.linalg.svd(w, compute_uv=False)[0] / (math.sqrt(np.mean(w ** 2)) * 32)
    assert f"largest singular value {ratio:.3f}× the Marchenko–Pastur edge of its 256×256 matrix" in message
    assert "(a fresh draw stays below 1.047×)" in message


def test_end_to_end_a_fine_tuned_head_passes_and_a_fresh_one_fails(tmp_path):
    rng = np.random.default_rng(22)
    tuned = _lightly_trained(rng, (384, 384), 1.19).astype(np.float32)
    fresh = rng.normal(0.0, 0.02, (384, 384)).astype(np.float32)
    for w, expected in ((tuned, "ok"), (fresh, "fail")):
        path = save(single_op("MatMul", w), tmp_path, f"{expected}.onnx")
        layer = initaudit.audit(path, jobs=1, profile="trained").models[0].layers[0]
        assert layer.status == expected, [f.message for f in layer.findings]
        assert layer.review.spectrum is not None
    code = main([str(tmp_path / "ok.onnx"), "--profile", "trained", "--format", "json", "-j", "1"])
    assert code == 0


# --- behaviours a planted bug once broke unnoticed: thresholds written as literals ------------------

def _unit_scaled(rng, factors_out=None, factors_in=None, shape=(64, 64, 3, 3)):
    w = rng.normal(0.0, 0.02, shape)
    if factors_out is not None:
        w = w * factors_out.reshape(-1, 1, 1, 1)
    if factors_in is not None:
        w = w * factors_in.reshape(1, -1, 1, 1)
    return w


def test_a_dispersion_z_between_4_and_6_is_not_fresh():
    """The fresh-draw band is |z| ≤ 4: a layer at z ≈ 5 was trained (per-unit scales of a few %)."""
    rng = np.random.default_rng(30)
    base = rng.normal(0.0, 0.02, (64, 64, 3, 3))
    spread = rng.standard_normal(64)
    found = []
    for eps in np.linspace(0.0, 0.12, 121):
        review = _review(base * (1 + eps * spread).reshape(-1, 1, 1, 1))
        if 4.3 < review.dispersion.z < 5.7:
            found.append(review)
    assert found, "no per-unit spread gave 4.3 < z < 5.7"
    assert all(not r.fresh for r in found)


def test_random_outputs_with_structured_inputs_are_not_fresh():
    """Alternating input-channel scales: the output units look i.i.d., the input units do not."""
    rng = np.random.default_rng(31)
    w = _unit_scaled(rng, factors_in=np.tile([1.0, 1.5], 32))
    review = _review(w)
    assert abs(review.dispersion.z) <= 4.0
    assert review.input_dispersion.z > 4.0
    assert not review.fresh and fresh_finding(review, stats_of(w)) is None


def test_a_unit_at_one_percent_of_the_median_is_alive_and_below_a_tenth_of_a_percent_dead():
    norms = np.ones(100)
    norms[3] = 0.01                    # 1 % of the median norm: alive
    norms[5] = 0.0009                  # 0.09 %: dead
    assert list(dead_units(norms ** 2)) == [5]


@pytest.mark.parametrize("dead, severity", [(10, "warn"), (9, "info")])
def test_ten_percent_dead_units_is_a_warn(dead, severity):
    w = np.random.default_rng(32).normal(0.0, 0.05, (100, 64))
    w[:dead] = 0.0
    review = _review(w, "OI", Fans(64, 100))
    found = dead_finding(review, stats_of(w))
    assert found.code == "IA402" and found.severity == severity


def _scale_model(tmp_path, weights, name="m.onnx"):
    return save(conv_chain(weights), tmp_path, name)


def test_five_comparable_layers_are_enough_for_a_scale_outlier(tmp_path):
    weights = [trained_like(np.random.default_rng(41 + i), (32, 32, 3, 3)) for i in range(5)]
    weights[2] = weights[2] * 300
    report = initaudit.audit(_scale_model(tmp_path, weights), jobs=1, profile="trained").models[0]
    assert [x.name for x in report.layers if any(f.code == "IA403" for f in x.findings)] == ["w2"]


def test_a_non_square_layer_is_scaled_by_its_fan_in(tmp_path):
    """A 64→16 conv 150× too large among 64-channel convs: rms·√fan_in with fan_in = 64·9 reads
    150× and flags it; rms·√fan_out (16·9) would read 75×, under the 100× bar."""
    rng = np.random.default_rng(42)
    weights = [trained_like(rng, (64, 64 if i else 3, 3, 3)) for i in range(6)]
    weights.append(trained_like(rng, (16, 64, 3, 3)) * 150)
    report = initaudit.audit(_scale_model(tmp_path, weights), jobs=1, profile="trained").models[0]
    flagged = {x.name: x for x in report.layers if any(f.code == "IA403" for f in x.findings)}
    assert list(flagged) == ["w6"]
    message = next(f.message for f in flagged["w6"].findings if f.code == "IA403")
    assert "150× above the median of the 7 comparable layers" in message


def test_a_trained_audit_reports_one_huge_value(tmp_path):
    """One value 2,000× the largest other weight: per-tensor int8 would crush the rest (IA404)."""
    weights = [trained_like(np.random.default_rng(43 + i), (32, 32 if i else 3, 3, 3)) for i in range(6)]
    w = weights[3].copy()
    w.flat[100] = 2000.0 * float(np.abs(w).max())
    weights[3] = w
    report = initaudit.audit(_scale_model(tmp_path, weights), jobs=1, profile="trained").models[0]
    flagged = [x.name for x in report.layers if any(f.code == "IA404" for f in x.findings)]
    assert flagged == ["w3"]


def test_values_float16_keeps_as_its_smallest_subnormal_raise_no_flush():
    """Between 2⁻²⁵ and 2⁻²⁴ float16 rounds up to 2⁻²⁴ (non-zero); below 2⁻²⁵ it gives 0."""
    kept = np.full((16, 16), 1.5 * 2.0 ** -25)
    lost = np.full((16, 16), 0.9 * 2.0 ** -25)
    assert (kept.astype(np.float16) != 0).all() and (lost.astype(np.float16) == 0).all()
    assert flush_finding(unit_sums_of(kept, "OI")) is None
    assert flush_finding(unit_sums_of(lost, "OI")).code == "IA207"


def test_the_flush_rule_page_states_the_energy_share_the_check_uses(capsys):
    """The check warns at 0.1 % of the layer's Σw² (flush_finding above); its page says the same."""
    main(["rules", "IA207"])
    page = capsys.readouterr().out
    assert "0.1 %" in page and "Σw²" in page
    tiny = 0.9 * 2.0 ** -25
    for share, warns in ((1.2e-3, True), (0.8e-3, False)):   # 99 flushed values carry this share of Σw²
        w = np.full((10, 10), tiny)
        w[0, 0] = tiny * math.sqrt(99 * (1 / share - 1))
        assert (flush_finding(unit_sums_of(w, "OI")) is not None) == warns


@pytest.mark.parametrize("scale, severity, how", [
    (0.0, "warn", "all exactly zero"),                                   # zeroed channels: a defect's mark
    (1e-7, "info", "decayed to a tiny non-zero norm"),                   # what weight decay leaves
])
def test_dead_units_zeroed_warn_and_decayed_are_information(scale, severity, how):
    w = np.random.default_rng(33).normal(0.0, 0.05, (40, 64))
    w[:12] *= scale                                                      # 30 % of the units
    review = _review(w, "OI", Fans(64, 40))
    found = dead_finding(review, stats_of(w))
    assert found.severity == severity and how in found.message and "12 of 40" in found.message


def test_a_few_zeroed_units_among_decayed_ones_count_alone():
    """3 exactly zero + 9 decayed of 40: 7.5 % zeroed, under the 10 % bar: info; 4 zeroed: warn."""
    for zeroed, severity in ((3, "info"), (4, "warn")):
        w = np.random.default_rng(34).normal(0.0, 0.05, (40, 64))
        w[:zeroed] = 0.0
        w[zeroed:12] *= 1e-7
        found = dead_finding(_review(w, "OI", Fans(64, 40)), stats_of(w))
        assert found.severity == severity
        assert f"{zeroed} exactly zero, {12 - zeroed} decayed" in found.message
# --- mean shift (IA204 in the trained profile) ------------------------------------------------------------------


def _units(rng, scales, per_unit, shifts):
    """Rows of ``per_unit`` values with mean exactly ``shifts[u]·scales[u]`` and σ exactly ``scales[u]``."""
    rows = rng.standard_normal((len(scales), per_unit))
    rows = (rows - rows.mean(axis=1, keepdims=True)) / rows.std(axis=1, keepdims=True)
    return (rows + np.asarray(shifts, np.float64)[:, None]) * np.asarray(scales, np.float64)[:, None]


def _shift_codes(w, layout="OI"):
    stats = stats_of(w)
    review = _review(w, layout, Fans(w.shape[1], w.shape[0]))
    found = shift_finding(review, stats)
    return review, found


def test_unit_sums_carry_each_output_unit_sum():
    w = np.random.default_rng(20).normal(0.1, 1.0, size=(12, 5, 3, 3))
    np.testing.assert_allclose(unit_sums_of(w, "OIHW").unit_sum, w.sum(axis=(1, 2, 3)), rtol=1e-12)


@pytest.mark.parametrize("units, per_unit, shift, flagged", [
    (16, 12, 1.9, False),    # several units: the bar is 2 σ (units of 12 values are too small to count)
    (16, 12, 2.1, True),
    (2, 96, 2.1, True),
    (1, 4096, 3.1, False),   # one unit: one vector, whose mean is its direction
    (1, 3, 6.4, False),
])
def test_ia204_whole_layer_bar_needs_several_units(units, per_unit, shift, flagged):
    w = np.random.default_rng(21).standard_normal((units, per_unit))
    w = (w - w.mean()) / w.std() + shift   # the layer's mean exactly `shift` σ
    review, found = _shift_codes(w)
    assert review.shifted == 0
    assert (found is not None) is flagged
    if flagged:
        assert found.code == "IA204" and found.severity == "warn"
        assert found.message.startswith(f"mean {w.mean():.4g} is {shift:.2f} σ away from zero ({units} output units")


def test_ia204_whole_layer_stays_within_sampling_noise():
    # 2 × 2 values 2.5 σ from zero: beyond the 2 σ bar, not beyond noise (5/√4 = 2.5 σ)
    w = np.array([[1.5, 3.5], [1.5, 3.5]])   # mean 2.5, σ 1
    assert shift_finding(_review(w, "OI", Fans(2, 2)), stats_of(w)) is None


def test_ia204_units_shifted_beyond_their_own_spread():
    """A wrong zero point on every channel of a per-channel int8 weight moves each unit by about its own
    max|w|: with unit scales spread over 30×, the whole layer stays within 2 σ while every unit is out."""
    rng = np.random.default_rng(22)
    scales = np.geomspace(0.01, 0.3, 16)
    w = _units(rng, scales, 64, [2.5] * 16)
    assert abs(w.mean()) / w.std() < 2.0
    review, found = _shift_codes(w)
    assert review.shifted == 16
    assert found is not None and found.code == "IA204"
    assert found.message.startswith("16 of 16 output units (100%) have a mean beyond 2× their own σ, all on one side")


@pytest.mark.parametrize("shifts, shifted, flagged", [
    ([2.5] * 12 + [0.0] * 4, 12, True),           # 75 %: the bar
    ([2.5] * 11 + [0.0] * 5, 11, False),          # 69 %
    ([1.9] * 16, 0, False),                       # every unit, but within 2 of its own σ
    ([2.5] * 8 + [-2.5] * 8, 8, False),           # half up, half down: not a shift of the layer
])
def test_ia204_share_of_shifted_units(shifts, shifted, flagged):
    w = _units(np.random.default_rng(23), np.geomspace(0.01, 0.3, 16), 64, shifts)
    assert abs(w.mean()) / w.std() < 2.0
    review, found = _shift_codes(w)
    assert review.shifted == shifted
    assert (found is not None) is flagged


def test_shifted_units_ignore_small_units_and_few_units():
    rng = np.random.default_rng(24)
    assert shifted_units(unit_sums_of(_units(rng, [1.0] * 16, 9, [3.0] * 16), "OI")) == 0    # 9 values a unit
    assert shifted_units(unit_sums_of(_units(rng, [1.0] * 7, 64, [3.0] * 7), "OI")) == 0     # 7 units
    assert shifted_units(unit_sums_of(_units(rng, [1.0] * 8, 16, [3.0] * 8), "OI")) == 8


def test_a_learned_lean_is_not_a_mean_shift_when_trained(tmp_path):
    """A classifier head whose units all lean the same way (−0.9 of their σ), as healthy trained output layers
    do: IA204 in the init profile, none in the trained one."""
    w = _units(np.random.default_rng(25), np.geomspace(0.02, 0.2, 64), 256, [-0.9] * 64).T.astype(np.float32)
    path = save(single_op("MatMul", w), tmp_path)      # MatMul [K, N]: units are the 64 columns
    trained = initaudit.audit(path, jobs=1, profile="trained").models[0].layers[0]
    init = initaudit.audit(path, jobs=1).models[0].layers[0]
    assert "IA204" not in [f.code for f in trained.findings]
    assert "IA204" in [f.code for f in init.findings]


def _qdq_conv(codes, scale, zero, axis=0):
    node = helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=axis)
    conv = helper.make_node("Conv", ["x", "w"], ["y"])
    return model([node, conv], [tensor("wq", codes), tensor("ws", scale), tensor("wz", zero)])


@pytest.mark.parametrize("zero_point, flagged", [(128, False), (0, True)])
def test_ia204_uint8_codes_read_with_zero_point_0(tmp_path, zero_point, flagged):
    """Per-channel uint8 codes meant with zero point 128, read with 0: every channel moves by ~max|w|."""
    w = trained_like(np.random.default_rng(26), (32, 16, 3, 3)).astype(np.float64)
    scale = (np.abs(w).max(axis=(1, 2, 3)) / 127).astype(np.float32).astype(np.float64)
    codes = (np.rint(w / scale[:, None, None, None]) + 128).astype(np.uint8)
    m = _qdq_conv(codes, scale.astype(np.float32), np.full(32, zero_point, np.uint8))
    layer = initaudit.audit(save(m, tmp_path), jobs=1, profile="trained").models[0].layers[0]
    values = (codes.astype(np.float64) - zero_point) * scale[:, None, None, None]
    assert layer.stats.mean == pytest.approx(values.mean(), rel=1e-9)
    ia204 = [f for f in layer.findings if f.code == "IA204"]
    assert bool(ia204) is flagged
    if flagged:
        assert abs(values.mean()) / values.std() < 2.0        # the whole layer alone would not tell
        assert ia204[0].message.startswith("32 of 32 output units (100%)") and layer.status == "warn"


def test_the_mean_shift_check_is_the_last_review_check():
    assert REVIEW_CHECKS[-1] is shift_finding and len(REVIEW_CHECKS) == len(set(REVIEW_CHECKS))


# --- the pipeline's review: which layers are comparable, what travels into the evidence ------------------


def _grouped_chain(weights, groups):
    """``x → Conv → Relu → …`` with the given OIHW weights, conv i with ``groups[i]`` groups."""
    nodes, inits, current = [], [], "x"
    for i, (w, g) in enumerate(zip(weights, groups)):
        pad = (w.shape[2] - 1) // 2
        nodes.append(helper.make_node("Conv", [current, f"w{i}"], [f"c{i}"], name=f"conv{i}", group=g,
                                      pads=[pad] * 4))
        current = "y" if i == len(weights) - 1 else f"r{i}"
        nodes.append(helper.make_node("Relu", [f"c{i}"], [current]))
        inits.append(tensor(f"w{i}", w))
    return model(nodes, inits)


def _ia403_names(tmp_path, weights, groups):
    path = save(_grouped_chain(weights, groups), tmp_path)
    layers = initaudit.audit(path, jobs=1, profile="trained").models[0].layers
    return [x.name for x in layers if any(f.code == "IA403" for f in x.findings)]


def _peers(rng, shape, count=5):
    return [trained_like(rng, shape, gain=float(rng.uniform(0.8, 2.0))) for _ in range(count)]


def test_a_layer_of_another_kernel_is_not_compared(tmp_path):
    """Five 3×3 convs and one 1×1 conv 300× their scale: the 1×1 conv has no comparable layer (a group of
    one, under the five needed), so nothing is flagged; a 3×3 conv as far out is."""
    rng = np.random.default_rng(50)
    peers = _peers(rng, (8, 8, 3, 3))
    assert _ia403_names(tmp_path, [*peers, trained_like(rng, (8, 8, 1, 1)) * 300], [1] * 6) == []
    assert _ia403_names(tmp_path, [*peers, trained_like(rng, (8, 8, 3, 3)) * 300], [1] * 6) == ["w5"]


def test_a_depthwise_conv_is_not_compared_with_full_convs(tmp_path):
    """Depthwise: more than one group and fan_in the kernel's area.  A 3×3 depthwise conv of 2 groups
    (W[2, 1, 3, 3]) 300× the scale of five full 3×3 convs is in a group of its own: not flagged."""
    rng = np.random.default_rng(51)
    depthwise = trained_like(rng, (2, 1, 3, 3), in_axis=None) * 300
    assert _ia403_names(tmp_path, [*_peers(rng, (2, 2, 3, 3)), depthwise], [1] * 5 + [2]) == []


def test_a_full_conv_of_one_input_channel_is_compared_with_full_convs(tmp_path):
    """A conv over a one-channel input has fan_in 9, the kernel's area, but one group: not depthwise, so it
    is compared with the other full 3×3 convs, and 300× their scale is flagged."""
    rng = np.random.default_rng(52)
    first = trained_like(rng, (4, 1, 3, 3), in_axis=None) * 300
    assert _ia403_names(tmp_path, [first, *_peers(rng, (4, 4, 3, 3))], [1] * 6) == ["w0"]


def test_the_review_gain_counts_fan_in_the_weight_scale_and_the_input_multiplier(tmp_path):
    """log_gain = log10(rms(w) · |alpha · s| · √fan_in) for ``Gemm(x · s, w, alpha)``; the evidence keeps
    the input multiplier s."""
    w = trained_like(np.random.default_rng(53), (24, 40), out_axis=0, in_axis=1)
    nodes = [helper.make_node("Mul", ["x", "s"], ["h"]),
             helper.make_node("Gemm", ["h", "w"], ["y"], alpha=0.5, transB=1)]
    path = save(model(nodes, [tensor("w", w), tensor("s", np.array([4.0], np.float32))]), tmp_path)
    review = initaudit.audit(path, jobs=1, profile="trained").models[0].layers[0].review
    rms = math.sqrt(float(np.mean(w.astype(np.float64) ** 2)))
    assert review.input_scale == 4.0
    assert review.log_gain == pytest.approx(math.log10(rms * 0.5 * 4.0 * math.sqrt(40)), rel=1e-9)


def test_an_embedding_table_is_reviewed_without_fans(tmp_path):
    """A Gather's table has no fans: its review has no gain to compare, and the review does not need one."""
    table = np.random.default_rng(54).normal(0.0, 0.02, (100, 16)).astype(np.float32)
    path = save(model([helper.make_node("Gather", ["w", "x"], ["y"])], [tensor("w", table)]), tmp_path)
    layer = initaudit.audit(path, jobs=1, profile="trained").models[0].layers[0]
    assert layer.fans is None and layer.review is not None and layer.review.log_gain is None


def test_fp16_in_the_init_profile_adds_the_flush_to_its_layer_and_keeps_the_fix(tmp_path):
    """``--fp16`` without the trained profile: no review, each layer kept in order, IA207 added to the layer
    float16 flushes, whose fix towards its target stays (std 2e-8 against Xavier's 0.25: ×0.25/std)."""
    rng = np.random.default_rng(55)
    healthy = rng.normal(0.0, 0.25, (16, 16)).astype(np.float32)
    tiny = (rng.choice([-1.0, 1.0], (16, 16)) * 2e-8).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "a"], ["h"]), helper.make_node("MatMul", ["h", "b"], ["y"])]
    path = save(model(nodes, [tensor("a", healthy), tensor("b", tiny)]), tmp_path)
    layers = initaudit.audit(path, jobs=1, fp16=True).models[0].layers
    assert [x.name for x in layers] == ["a", "b"]
    assert all(x.review is None for x in layers)
    assert "IA207" not in [f.code for f in layers[0].findings]
    assert [f.code for f in layers[1].findings] == ["IA101", "IA207"] and layers[1].status == "fail"
    std = float(np.std(tiny.astype(np.float64)))
    assert layers[1].suggestion is not None and layers[1].suggestion.scale == pytest.approx(0.25 / std, rel=1e-6)


# --- each finding and each note of the review, word for word, from hand-built evidence ----------------------------


_BASE = Review(units=64, per_unit=576, dispersion=Dispersion(1.02, 0.31, 0.76), input_dispersion=None, schemes=(),
               family="normal", fresh=False, dead=0, dead_indices=(), sqnr_int8_db=None, max_over_rms=None,
               float16_flushed=0, float16_subnormal=0, log_gain=None)
_STATS = TensorStats(count=36864, mean=0.0, var=4e-4, min=-0.08, max=0.08, excess_kurtosis=0.0312, nonfinite=0,
                     zeros=10)
#: σ₁ 1.1× the Marchenko–Pastur edge rms·(√8 + √576) of an 8 × 576 block of rms 1
_BLOCK = Spectrum(8, 576, 1.1 * (math.sqrt(8) + 24.0), 1.0)


def _evidence(**changes):
    return replace(_BASE, **changes)


def test_the_never_trained_message_word_for_word():
    review = _evidence(fresh=True, input_dispersion=Dispersion(0.97, -0.42, 0.67),
                       schemes=("xavier", "std_0.02", "custom"), spectrum=_BLOCK, spectrum_limit=1.2)
    assert fresh_finding(review, _STATS).message == (
        "looks never trained: unit-norm dispersion D = 1.02 over 64 units (z = +0.31, p = 0.76), over input units "
        "D = 0.97 (z = -0.42) as in an i.i.d. draw; normal values (excess kurtosis 0.03); variance matches "
        "Xavier/Glorot (Keras' glorot_uniform), N(0, 0.02), custom; largest singular value 1.100× the "
        "Marchenko–Pastur edge of its 8×576 block (a fresh draw stays below 1.200×)")
    bare = _evidence(fresh=True, family="uniform", schemes=("torch_default",))
    no_kurtosis = replace(_STATS, excess_kurtosis=None)
    assert fresh_finding(bare, no_kurtosis).message == (
        "looks never trained: unit-norm dispersion D = 1.02 over 64 units (z = +0.31, p = 0.76) as in an i.i.d. "
        "draw; uniform values (excess kurtosis nan); variance matches PyTorch's default U(±1/√fan_in)")


def test_the_spectrum_and_input_notes_are_empty_without_their_evidence():
    assert spectrum_note(_evidence(spectrum=_BLOCK)) == ""            # no limit to hold it to
    assert sums_note(_BASE) == ""


@pytest.mark.parametrize("changes, expected", [
    (dict(units=40, dead=10, dead_zero=10, dead_indices=tuple(range(8))),
     ("warn", "10 of 40 output units (25%) are dead (norm below 0.001× the median unit norm; all exactly zero), "
              "first: 0, 1, 2, 3, 4, 5, 6, 7, …")),
    (dict(units=40, dead=2, dead_zero=0, dead_indices=(2, 9)),
     ("info", "2 of 40 output units (5%) are dead (norm below 0.001× the median unit norm; decayed to a tiny non-zero "
              "norm as weight decay leaves units that stopped learning), first: 2, 9")),
    (dict(units=2, dead=1, dead_zero=1, dead_indices=(1,)),
     ("warn", "1 of 2 output units (50%) are dead (norm below 0.001× the median unit norm; all exactly zero), "
              "first: 1")),
    (dict(units=1, dead=1, dead_zero=1, dead_indices=(0,)), None),     # one unit: nothing to compare it with
    (dict(units=4, dead=0), None),
])
def test_the_dead_unit_message_word_for_word(changes, expected):
    found = dead_finding(_evidence(**changes), _STATS)
    assert (found if found is None else (found.severity, found.message)) == expected


def test_the_int8_outlier_bar_is_minus_6_db_exclusive():
    assert outlier_finding(_evidence(sqnr_int8_db=-6.0, max_over_rms=880.0), _STATS) is None
    assert outlier_finding(_evidence(sqnr_int8_db=-6.5, max_over_rms=1000.0), _STATS).message == (
        "max |w| is 1e+03× the rms of the other values: per-tensor int8 would keep them at an SQNR of about -6.5 dB "
        "(a Gaussian layer keeps ~40 dB); quantize per channel or check that value")


def test_the_flush_bar_is_a_thousandth_of_the_energy_inclusive_and_its_message():
    sums = UnitSums(units=1, per_unit=1000, unit_sq=np.ones(1), count=1000, power=(1.0, 1.0, 1.0, 1.0), max_abs=1.0,
                    flushed=50, subnormal=80, nonzero=1000, flushed_sq=1e-3)
    assert flush_finding(sums).message == (
        "50 of 1000 non-zero values (5.0%), 0.1% of the layer's Σw², are below 2.98e-08 and become 0 in float16 "
        "(80 below the smallest normal 6.1e-05)")


def test_the_flush_check_holds_values_whose_fourth_power_or_square_underflows():
    """float64 weights of 1e-100: Σw⁴ underflows to 0, Σw² does not, every value flushes; of 1e-200 even Σw²
    is 0 and there is no energy to share out (no finding, no division by zero)."""
    found = flush_finding(unit_sums_of(np.full((4, 4), 1e-100), "OI"))
    assert found.message.startswith("16 of 16 non-zero values (100.0%), 100.0% of the layer's Σw²")
    assert flush_finding(unit_sums_of(np.full((4, 4), 1e-200), "OI")) is None


def test_modified_z_without_spread_is_none_for_every_value():
    assert modified_z([2.0, 2.0, 2.0, 2.0, 9.0]) == [None] * 5     # MAD 0: the median of 0, 0, 0, 0, 7


def test_scale_outliers_skip_small_groups_and_go_on():
    keys = [("a",), ("b",), ("b",), ("b",), ("b",), ("b",)]
    zs, offsets = scale_outliers(keys, [1.0, 0.0, 0.1, 0.2, 0.3, 2.5])
    assert zs[0] is None and offsets[0] is None                      # a group of one
    # median 0.2, MAD 0.1: z = 0.6745 (v − 0.2) / 0.1
    assert zs[1:] == pytest.approx([0.6745 * (v - 0.2) / 0.1 for v in (0.0, 0.1, 0.2, 0.3, 2.5)])
    assert offsets[1:] == pytest.approx([-0.2, -0.1, 0.0, 0.1, 2.3])


@pytest.mark.parametrize("changes, expected", [
    (dict(log_gain=-1.0, scale_z=-8.0, scale_offset=-2.5, scale_group=7, input_scale=0.005),
     "scale rms·√fan_in × the input's multiplier 0.005 = 0.1 is 316× below the median of the 7 comparable layers "
     "of this model (robust z = -8.0; flagged beyond ±3.5 and 100×)"),
    (dict(log_gain=0.5, scale_z=3.6, scale_offset=2.0, scale_group=5),    # 100× exactly: flagged
     "scale rms·√fan_in = 3.16 is 100× above the median of the 5 comparable layers of this model "
     "(robust z = +3.6; flagged beyond ±3.5 and 100×)"),
    (dict(log_gain=0.5, scale_z=3.5, scale_offset=2.5, scale_group=5), None),   # z 3.5 exactly: not beyond
    (dict(log_gain=0.5, scale_z=8.0, scale_offset=2.5, scale_group=5, fresh=True), None),  # IA401's
    (dict(log_gain=0.5, scale_z=None, scale_offset=2.5, scale_group=5), None),
    (dict(log_gain=0.5, scale_z=8.0, scale_offset=None, scale_group=5), None),
    (dict(log_gain=None, scale_z=8.0, scale_offset=2.5, scale_group=5), None),
])
def test_the_scale_outlier_message_and_its_bars(changes, expected):
    found = scale_finding(_evidence(**changes), _STATS)
    assert (found if found is None else found.message) == expected


def _stats(count, mean, var):
    return TensorStats(count=count, mean=mean, var=var, min=mean - 1.0, max=mean + 1.0, excess_kurtosis=0.0,
                       nonfinite=0, zeros=0)


def test_the_mean_shift_bars_written_out():
    """The whole-layer bar is 2 σ exclusive (and beyond 5/√n); a constant layer has no σ to count in; two values
    are enough; eight units (inclusive) with three quarters shifted are."""
    assert shift_finding(_evidence(units=2), TensorStats(4, 1.0, 0.0, 1.0, 1.0, None, 0, 0)) is None
    assert shift_finding(_evidence(units=2), _stats(2, 10.1, 0.01)).message == (
        "mean 10.1 is 101.00 σ away from zero (2 output units; healthy trained layers stay within 2 σ): a constant "
        "added to the whole tensor, or a wrong zero point")
    assert shift_finding(_evidence(units=16), _stats(100, 2.0, 1.0)) is None
    assert shift_finding(_evidence(units=8, shifted=6), _stats(800, 0.1, 1.0)).message == (
        "6 of 8 output units (75%) have a mean beyond 2× their own σ, all on one side (mean of the layer 0.1, "
        "0.10 σ): a wrong zero point, or a constant added to every unit")


def test_check_notes_of_an_untested_single_unit():
    review = _evidence(units=1, per_unit=64, dispersion=None, max_over_rms=3.0, float16_subnormal=2)
    assert check_notes(review) == {"never trained": "not tested (1 unit)", "float16": "0 values flush to 0, 2 subnormal"}
    assert check_notes(_evidence(units=3, dispersion=None))["never trained"] == "not tested (3 units)"


def test_check_notes_of_a_small_layer_word_for_word():
    review = _evidence(units=2, per_unit=8, dispersion=Dispersion(1.5, 0.8, 0.42), family="other", log_gain=0.2,
                       sqnr_int8_db=30.3, max_over_rms=4.5)
    assert check_notes(review) == {
        "never trained": "D = 1.5 over 2 units, z = +0.8; other; schemes none → i.i.d.-like but no init family",
        "dead units": "0 of 2",
        "scale vs comparable layers": "fewer than 5 comparable layers: not compared",
        "int8 outliers": "max|w| = 4.5× the others' rms, per-tensor int8 SQNR ≈ 30.3 dB",
        "float16": "0 values flush to 0, 0 subnormal",
    }


def test_check_notes_of_a_fresh_layer_word_for_word():
    review = _evidence(fresh=True, input_dispersion=Dispersion(0.97, -0.42, 0.67), schemes=("xavier", "std_0.02"),
                       dead=3, dead_zero=1, dead_indices=(4, 9, 17), log_gain=0.25, scale_z=1.25, scale_group=6,
                       scale_offset=0.5, input_scale=2.0, spectrum=_BLOCK, spectrum_limit=1.2)
    assert check_notes(review) == {
        "never trained": "D = 1.02 over 64 units, z = +0.31, inputs D = 0.97, z = -0.42; normal; schemes xavier, "
                         "std_0.02; largest singular value 1.100× the Marchenko–Pastur edge of its 8×576 block "
                         "(a fresh draw stays below 1.200×) → fresh draw: never trained",
        "dead units": "3 of 64 (1 exactly zero; first: 4, 9, 17)",
        "scale vs comparable layers": "rms·√fan_in × the input's multiplier 2 = 1.78, 3.16× their median, robust z "
                                      "+1.25 among 6 layers",
        "float16": "0 values flush to 0, 0 subnormal",
    }
    at_median = check_notes(_evidence(log_gain=0.0, scale_z=0.0, scale_group=6, scale_offset=0.0))
    assert at_median["scale vs comparable layers"] == "rms·√fan_in = 1, 1× their median, robust z +0.00 among 6 layers"


@pytest.mark.parametrize("changes, verdict", [
    (dict(input_dispersion=Dispersion(2.0, 4.5, 1e-5)), "structured: trained"),     # the inputs alone
    (dict(dispersion=Dispersion(1.3, 4.0, 6e-5)), "i.i.d.-like but no init scheme's variance"),   # |z| 4: the band
    (dict(input_dispersion=Dispersion(0.7, -4.0, 6e-5)), "i.i.d.-like but no init scheme's variance"),
    (dict(schemes=("xavier",)), "i.i.d.-like but too small to tell"),
    (dict(schemes=("xavier",), spectrum=Spectrum(4, 4, 5.0, 1.0), spectrum_limit=1.25),   # σ₁ at the limit: bulk
     "i.i.d.-like but too small to tell"),
    (dict(schemes=("xavier",), spectrum=Spectrum(4, 4, 5.5, 1.0), spectrum_limit=1.25),
     "a singular value out of the bulk: trained"),
    (dict(schemes=("xavier",), spectrum=_BLOCK), "i.i.d.-like but too small to tell"),   # no limit: not judged
])
def test_the_never_trained_note_gives_the_verdict(changes, verdict):
    assert check_notes(_evidence(**changes))["never trained"].endswith(f"→ {verdict}")


def _var_stats(count, var, kurtosis=0.0, zeros=0):
    return TensorStats(count=count, mean=0.0, var=var, min=-1.0, max=1.0, excess_kurtosis=kurtosis, nonfinite=0,
                       zeros=zeros)


def test_init_schemes_under_every_convention_scaled_and_filtered_by_family():
    """Variance 4e-4 = Xavier's 2/(1250 + 3750) and N(0, 0.02)'s; LeCun's 1/2500 under the second fan convention.
    The weight scale multiplies the variance (1e-4 · 2²); a uniform layer is no fixed-std init."""
    conventions = {"connectivity": Fans(1250, 3750), "pytorch": Fans(2500, 2500)}
    assert init_schemes(_var_stats(4096, 4e-4), conventions, 1.0, "normal") == ("xavier", "lecun", "std_0.02")
    assert init_schemes(_var_stats(4096, 4e-4), {"c": Fans(10, 10)}) == ("std_0.02",)       # scale 1 by default
    assert init_schemes(_var_stats(4096, 1e-4), {"c": Fans(1250, 3750)}, 2.0, "normal") == ("xavier", "std_0.02")
    assert init_schemes(_var_stats(4096, 4e-4), {"c": Fans(1250, 3750)}, 1.0, "uniform") == ("xavier",)


def test_init_schemes_need_two_values_and_a_spread():
    # two values of variance 0.01, Xavier's 2/(100 + 100): two values allow a wide band, but they are judged
    assert "xavier" in init_schemes(stats_of(np.array([-0.1, 0.1])), {"c": Fans(100, 100)})
    assert init_schemes(_var_stats(100, 0.0, None, zeros=100), {"c": Fans(100, 100)}) == ()


def test_the_fixed_std_match_widens_with_the_excess_kurtosis():
    """A variance 1.15× N(0, 0.02)'s over 4096 values: beyond the noise of a normal draw, within that of values of
    excess kurtosis 6."""
    assert init_schemes(_var_stats(4096, 1.15 * 4e-4, 6.0), {"c": Fans(10, 10)}) == ("std_0.02",)
    assert init_schemes(_var_stats(4096, 1.15 * 4e-4, 0.0), {"c": Fans(10, 10)}) == ()


def test_dead_units_of_no_unit_one_unit_and_a_unit_at_the_bar():
    empty = dead_units(np.zeros(0))
    assert empty.dtype == np.int64 and empty.size == 0
    assert list(dead_units(np.array([0.0]))) == [0]
    assert list(dead_units(np.array([1.0, 1.0, 1.0, 0.001 ** 2]))) == []   # a norm of exactly 1e-3 × the median


@pytest.mark.parametrize("shape, fresh, inputs_tested", [
    ((8, 512), True, True),          # 8 units and 4096 values: the least that is judged
    ((64, 4, 4, 4), True, False),    # 4 input units: too few to test that side
    ((64, 8, 4, 4), True, True),     # 8 input units: tested
])
def test_review_layer_at_its_unit_and_value_floors(shape, fresh, inputs_tested):
    w = np.random.default_rng(60).normal(0.0, 0.02, shape)
    layout = "OI" if len(shape) == 2 else "OIHW"
    review = _review(w, layout)
    assert review.fresh is fresh
    assert (review.input_dispersion is not None) is inputs_tested


def test_review_layer_of_two_units_has_a_dispersion_and_its_gain_by_default():
    w = np.random.default_rng(61).normal(0.0, 0.05, (2, 64))       # Σw² ≈ 0.3: below 1
    review = _review(w, "OI", Fans(64, 2))
    assert review.dispersion is not None and review.input_scale == 1.0
    assert review.log_gain == pytest.approx(math.log10(math.sqrt(np.mean(w ** 2)) * math.sqrt(64)), rel=1e-12)


def test_a_uniform_layer_at_the_variance_of_n_0_002_matches_no_fixed_std():
    w = np.random.default_rng(62).uniform(-0.02 * math.sqrt(3), 0.02 * math.sqrt(3), (64, 64))
    review = _review(w, "OI", Fans(64, 64))
    assert review.family == "uniform" and "std_0.02" not in review.schemes


def _sums(count, power, max_abs=1.0, units=4, per_unit=4, unit_sq=None, in_sq=None):
    unit_sq = np.array([1.0, 2.0, 3.0, 4.0]) if unit_sq is None else unit_sq
    return UnitSums(units=units, per_unit=per_unit, unit_sq=unit_sq, count=count, power=power, max_abs=max_abs,
                    flushed=0, subnormal=0, nonzero=count, in_units=4, in_per_unit=4, in_sq=in_sq)


def test_dispersion_needs_two_units_values_and_a_spread_of_squares():
    """None for no finite value, one unit, no input sums, or values whose squares are all equal (±1: Var(w²) = 0);
    units of one value each are tested."""
    assert dispersion(_sums(0, (0.0, 0.0, 0.0, 0.0))) is None
    assert dispersion(_sums(4, (4.0, 6.0, 10.0, 18.0), units=1, unit_sq=np.array([4.0]))) is None
    assert dispersion(_sums(16, (10.0, 30.0, 100.0, 354.0)), "in") is None
    assert dispersion(unit_sums_of(np.tile([1.0, -1.0], (8, 8)), "OI")) is None
    assert dispersion(unit_sums_of(np.random.default_rng(63).normal(size=(64, 1)), "OI")) is not None


def test_int8_sqnr_of_two_values_tiny_values_and_one_value_alone():
    """[0.1, 0.05]: the other value's rms 0.05, step 2·0.1/255; 1e-100 values (Σw⁴ underflows): rms = max, so
    10·log10(12·255²/4); one non-zero value among zeros, or one value: no rest to compare."""
    sqnr, peak = int8_sqnr(unit_sums_of(np.array([[0.1, 0.05]]), "OI"))
    assert sqnr == pytest.approx(10 * math.log10(12 * 0.05 ** 2 / (2 * 0.1 / 255) ** 2), rel=1e-12)
    assert peak == pytest.approx(2.0, rel=1e-12)
    sqnr, peak = int8_sqnr(unit_sums_of(np.full((4, 4), 1e-100), "OI"))
    assert sqnr == pytest.approx(10 * math.log10(12 * 255 ** 2 / 4), rel=1e-9) and peak == pytest.approx(1.0)
    assert int8_sqnr(unit_sums_of(np.array([[1.0, 0.0, 0.0, 0.0]]), "OI")) == (None, None)
    assert int8_sqnr(_sums(1, (1.0, 1.0, 1.0, 1.0))) == (None, None)


def test_review_layer_dead_units_and_gain_at_their_edges():
    """One unit is never dead (and an all-zero one has no gain); of two units one can be; at most 8 indices are
    kept; values of 1e-100 (Σw⁴ underflows) still have a gain, and all are float16 subnormals."""
    fans = Fans(64, 1)
    one = _review(np.zeros((1, 64)), "OI", fans)
    assert one.dead == 0 and one.log_gain is None
    assert _review(np.random.default_rng(64).normal(size=(1, 64)), "OI", fans).dead == 0
    w = np.random.default_rng(65).normal(size=(2, 64))
    w[1] = 0.0
    two = _review(w, "OI", Fans(64, 2))
    assert (two.dead, two.dead_indices) == (1, (1,))
    w = np.random.default_rng(66).normal(size=(20, 64))
    w[:10] = 0.0
    assert _review(w, "OI", Fans(64, 20)).dead_indices == tuple(range(8))
    tiny = _review(np.full((4, 16), 1e-100), "OI", Fans(16, 4))
    assert tiny.log_gain == pytest.approx(math.log10(1e-100 * math.sqrt(16)), rel=1e-12)
    assert tiny.float16_subnormal == 64


def test_shifted_units_at_exactly_two_sigma_and_to_the_negative_side():
    """Units of 16 values 1 and 3: mean 2, σ 1 exactly, not beyond 2 σ; eight units shifted down count."""
    assert shifted_units(unit_sums_of(np.tile([1.0, 3.0], (8, 8)), "OI")) == 0
    assert shifted_units(unit_sums_of(_units(np.random.default_rng(67), [1.0] * 8, 16, [-3.0] * 8), "OI")) == 8
