"""The optional compiled one-pass kernel (``initaudit.accel``) against numpy float64, and the
numpy path it stands in for: same statistics for float32, float16 and bfloat16, NaN/Inf
chunks handed back to numpy, and off when the user says so."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from modelkit import model, save, tensor, to_external
from onnx import TensorProto, helper

import initaudit
from initaudit.errors import InitauditError
from initaudit.measure import accel, kernels
from initaudit.measure import streaming as measure_module
from initaudit.measure.stats import MomentAccumulator, stats_of
from initaudit.measure.streaming import measure_all
from initaudit.read import tensors
from initaudit.read.tensors import FilePayload
from initaudit.trace.plan import MeasureTask
from tests import test_kernels as plain
from tests.test_kernels import _bf16_values, check, reference, source

pytest.importorskip("llvmlite")
RNG = np.random.default_rng(11)


@pytest.fixture
def compiled():
    accel.reset()
    assert accel.prepare()
    yield
    accel.reset()


@pytest.mark.parametrize("size", [1, 3, 17, 1001, (1 << 17) + 5])
def test_power_sums_match_numpy_float64(compiled, size):
    x = RNG.normal(0.02, 0.3, size).astype(np.float32)
    x[::7] = 0.0
    x[3::11] = -0.0
    for shift in (0.0, 0.125):
        sums = accel.power_sums(x, shift)
        d = x.astype(np.float64) - shift
        assert sums is not None
        for k, got in enumerate(sums[:4], start=1):
            want = float(np.sum(d ** k))
            assert got == pytest.approx(want, rel=1e-12, abs=1e-12 * float(np.sum(np.abs(d) ** k)))
        assert (sums.lo, sums.hi) == (float(x.min()), float(x.max()))
        assert sums.zeros == int(np.count_nonzero(x == 0))


def test_every_finite_half_pattern(compiled):
    """All 65,536 patterns minus the non-finite ones: subnormals, ±0, the largest values."""
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    with np.errstate(invalid="ignore"):  # signalling NaN patterns, left out below
        as_bfloat16 = _bf16_values(bits)
    for kind, values in (("float16", bits.view(np.float16).astype(np.float64)), ("bfloat16", as_bfloat16)):
        finite = bits[np.isfinite(values)]
        x = finite.view(np.float16) if kind == "float16" else finite
        d = values[np.isfinite(values)]
        sums = accel.power_sums(x, 0.0, None if kind == "float16" else "bfloat16")
        assert sums is not None
        assert sums.s2 == pytest.approx(float(np.sum(d * d)), rel=1e-12)
        assert sums.s1 == pytest.approx(float(np.sum(d)), abs=1e-12 * float(np.sum(np.abs(d))))
        assert (sums.lo, sums.hi, sums.zeros) == (d.min(), d.max(), int(np.count_nonzero(d == 0)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_chunks_go_back_to_numpy(compiled, bad):
    x = RNG.normal(0.0, 1.0, 1000).astype(np.float32)
    x[500] = bad
    assert accel.power_sums(x, 0.0) is None
    acc = MomentAccumulator()
    acc.add(x[:400])    # compiled
    acc.add(x[400:])    # holds the bad value: numpy counts it
    check(acc.result(), reference(x), kurt_rel=1e-5)  # numpy's chunk: float32 third and fourth powers


def test_types_the_kernel_does_not_read(compiled):
    assert accel.power_sums(np.ones(10, np.float64), 0.0) is None
    assert accel.power_sums(np.ones(10, np.int8), 0.0) is None


def test_accumulator_matches_numpy_path_and_float64_truth(compiled):
    """Chunks through the kernel, a mean far from zero (the shift), and the numpy path's answer."""
    for values in (RNG.normal(0.0, 0.05, 300_000), RNG.normal(40.0, 0.01, 300_000),
                   RNG.laplace(-0.3, 0.2, 70_001)):
        x = values.astype(np.float32)
        acc = MomentAccumulator()
        for at in range(0, x.size, 65_536):
            acc.add(x[at:at + 65_536])
        first = x[:65_536].astype(np.float64)  # shifted by the first chunk's mean when it exceeds the std
        far = first.mean() ** 2 > first.var()
        assert acc.shift == (pytest.approx(first.mean(), rel=1e-12) if far else 0.0)
        fast = acc.result()
        check(fast, reference(x))
        accel.reset()
        slow = stats_of(x)
        assert accel.prepare()
        assert slow.var == pytest.approx(fast.var, rel=1e-12)
        # the numpy path sums the third and fourth powers in float32 (module docstring of stats)
        assert slow.excess_kurtosis + 3 == pytest.approx(fast.excess_kurtosis + 3, rel=1e-5)


@pytest.mark.parametrize("kind", ["float16", "bfloat16"])
def test_half_tensors_through_the_kernel(compiled, kind):
    bits, values, data_type = plain.half_case(kind, 300_001, RNG, 200_000)
    task = MeasureTask(source(data_type, (bits.size,), bits.tobytes()))
    assert isinstance(kernels.plan_kernel(task), kernels.CompiledHalfKernel)
    stats, _ = measure_all([task])[0]
    check(stats, reference(values))


def test_turned_off_by_the_environment(monkeypatch):
    accel.reset()
    monkeypatch.setenv("INITAUDIT_ACCEL", "0")
    assert not accel.prepare()
    assert accel.power_sums(np.ones(4, np.float32), 0.0) is None
    monkeypatch.delenv("INITAUDIT_ACCEL")
    assert accel.prepare()
    accel.reset()


def test_prepared_for_large_models_only(monkeypatch):
    calls = []
    monkeypatch.setattr(accel, "prepare", lambda: calls.append(1) or False)
    x = RNG.normal(0, 1, 1000).astype(np.float32)
    task = MeasureTask(source(TensorProto.FLOAT, x.shape, x.tobytes()))
    monkeypatch.setattr(measure_module, "_file_values", lambda task: measure_module.ACCEL_MIN_VALUES - 1)
    measure_all([task])
    assert calls == []
    monkeypatch.setattr(measure_module, "_file_values", lambda task: measure_module.ACCEL_MIN_VALUES)
    measure_all([task])
    assert calls == [1]


@pytest.mark.parametrize("offset", [4096, 8, 6])
def test_mapped_reads_give_the_same_bytes(tmp_path, monkeypatch, offset):
    """Mapped windows (page-aligned or not, a window boundary inside the range) read what pread reads;
    an offset that is not a whole number of elements falls back to copies."""
    values = RNG.normal(0, 1, 300_001).astype(np.float32)
    path = tmp_path / "w.bin"
    path.write_bytes(b"\1" * offset + values.tobytes() + b"\2" * 7)
    monkeypatch.setattr(tensors, "MAP_WINDOW", 40_000)  # several windows, not a multiple of the page size
    with open(path, "rb") as handle:
        payload = FilePayload(handle.fileno(), offset, values.nbytes)
        copied = b"".join(bytes(b) for b in payload.iter_bytes(4 * 4099, 4))
        mapped = [np.frombuffer(b, np.float32).copy() for b in payload.iter_bytes(4 * 4099, 4, mapped=True)]
        assert copied == values.tobytes() and np.array_equal(np.concatenate(mapped), values)
        assert all(isinstance(b.obj, bytearray) == (offset % 4 != 0) for b in payload.iter_bytes(4 * 4099, 4, True))


def test_mapped_read_of_a_file_cut_short(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"\0" * 1000)
    with open(path, "rb") as handle:
        with pytest.raises(InitauditError, match="file ended early"):
            list(FilePayload(handle.fileno(), 0, 4000).iter_bytes(400, 4, mapped=True))


def test_whole_model_with_and_without_the_kernel(tmp_path, monkeypatch):
    """The same report from both paths (kurtosis to the numpy path's float32 third and fourth powers),
    read from external data through mapped windows, with workers."""
    weights = {"w0": RNG.normal(0, 0.02, (256, 512)).astype(np.float32),
               "w1": RNG.normal(0.3, 0.1, (512, 128)).astype(np.float16),
               "w2": RNG.uniform(-0.1, 0.1, (128, 64)).astype(np.float32)}
    weights["w0"][5, :7] = np.nan
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h0"]), helper.make_node("MatMul", ["h0", "w1"], ["h1"]),
             helper.make_node("MatMul", ["h1", "w2"], ["y"])]
    m = model(nodes, [tensor(k, v) for k, v in weights.items()])
    to_external(m, tmp_path)
    path = save(m, tmp_path)
    monkeypatch.setattr(measure_module, "ACCEL_MIN_VALUES", 0)
    monkeypatch.setattr(measure_module, "PARALLEL_MIN_BYTES", 0)
    reports = []
    for setting in ("0", "1"):
        monkeypatch.setenv("INITAUDIT_ACCEL", setting)
        accel.reset()
        reports.append(initaudit.audit(path, jobs=2).models[0].layers)
    accel.reset()
    for slow, fast in zip(*reports):
        assert (slow.stats.count, slow.stats.nonfinite, slow.stats.zeros, slow.stats.min, slow.stats.max) == \
            (fast.stats.count, fast.stats.nonfinite, fast.stats.zeros, fast.stats.min, fast.stats.max)
        assert fast.stats.var == pytest.approx(slow.stats.var, rel=1e-12)
        assert fast.stats.excess_kurtosis + 3 == pytest.approx(slow.stats.excess_kurtosis + 3, rel=1e-5)
        assert (fast.status, fast.findings) == (slow.status, slow.findings)
    expected = weights["w0"][np.isfinite(weights["w0"])].astype(np.float64)
    assert reports[1][0].stats.var == pytest.approx(expected.var(), rel=1e-12)


def test_compiled_code_survives_the_page_release_and_exit():
    """The library pages given back are read again when needed: compiling, releasing, running and
    exiting (LLVM's destructors) all work in a fresh process."""
    code = ("import numpy as np; from initaudit.measure import accel; assert accel.prepare(); "
            "accel.release_library_pages('llvmlite'); accel.release_library_pages('libc'); "
            "s = accel.power_sums(np.arange(5, dtype=np.float32), 0.0); assert s.s2 == 30.0, s; "
            "accel.reset(); assert accel.prepare(); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


@pytest.fixture
def compiled_spy(compiled, monkeypatch):
    """The compiled kernel, and the count of chunks the grouped (quantized) kernel measured."""
    used = []
    real = accel.grouped_power_sums

    def spy(*args, **kwargs):
        sums = real(*args, **kwargs)
        used.append(sums is not None)
        return sums

    monkeypatch.setattr(accel, "grouped_power_sums", spy)
    return used


@pytest.mark.parametrize("kind", list(plain.INT_TYPES))
@pytest.mark.parametrize("layout", ["axis1", "axis0", "blocked", "blocked-odd"])
@pytest.mark.parametrize("zero_point", [True, False])
def test_dequantized_statistics_through_the_kernel(compiled_spy, kind, layout, zero_point, monkeypatch):
    """As ``test_kernels``, per-axis and blocked, the kernel dequantizing in registers (the padded last
    blocks by numpy)."""
    plain.test_dequantized_statistics_match_numpy(kind, layout, zero_point, monkeypatch)
    assert compiled_spy and all(compiled_spy)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("k,block", [(64, 16), (100, 32), (45, 16)])
@pytest.mark.parametrize("zeros", ["packed", "float", "none"])
def test_nbits_through_the_kernel(compiled_spy, bits, k, block, zeros, monkeypatch):
    """MatMulNBits 4 and 8 bits: whole blocks read by the kernel from the stored bytes (a padded last
    block, and 2 bits, by numpy)."""
    plain.test_nbits_matches_numpy(bits, k, block, zeros, monkeypatch)
    assert any(compiled_spy) == (bits in (4, 8))


@pytest.mark.parametrize("layout", ["axis1", "axis0"])
def test_quantized_mean_far_from_zero_through_the_kernel(compiled_spy, layout):
    plain.test_mean_far_from_zero_keeps_every_moment(layout)
    assert all(compiled_spy) and compiled_spy


def test_grouped_power_sums_against_numpy(compiled):
    """Every code type, runs and columns, a shift: the sums, range and zero count of ``s·(q - z)``."""
    for dtype in (np.int8, np.uint8, np.int16, np.uint16):
        info = np.iinfo(dtype)
        q = RNG.integers(info.min, info.max, (37, 129), endpoint=True).astype(dtype)
        q[3, :5] = 2
        for columns in (False, True):
            groups = q.shape[1 if columns else 0]
            s = RNG.uniform(-0.1, 0.1, groups).astype(np.float32)
            z = RNG.integers(-3, 4, groups)
            z[1] = 2
            view = (1, -1) if columns else (-1, 1)
            x = (q.astype(np.float64) - z.reshape(view)) * s.astype(np.float64).reshape(view)
            sums = accel.grouped_power_sums(q, s, z, 0.25, columns)
            v = x - 0.25
            for k, got in enumerate(sums[:4], start=1):
                assert got == pytest.approx(float(np.sum(v ** k)), rel=1e-12, abs=1e-12 * float(np.sum(np.abs(v) ** k)))
            assert (sums.lo, sums.hi, sums.zeros) == (x.min(), x.max(), int(np.count_nonzero(x == 0)))
    packed = RNG.integers(0, 256, (50, 16)).astype(np.uint8)
    s, z = RNG.uniform(0.01, 0.1, 50), RNG.integers(0, 16, 50)
    codes = np.stack([packed & 15, packed >> 4], axis=2).reshape(50, 32)  # low bits first
    x = (codes - z[:, None]) * s[:, None]
    sums = accel.grouped_power_sums(packed, s, z, 0.0, False, packed4=True)
    assert sums.s2 == pytest.approx(float(np.sum(x * x)), rel=1e-12)
    assert (sums.lo, sums.hi, sums.zeros) == (x.min(), x.max(), int(np.count_nonzero(x == 0)))
    with pytest.raises(ValueError, match="scales"):
        accel.grouped_power_sums(packed, s[:3], z[:3], 0.0, False)
    assert accel.grouped_power_sums(packed.astype(np.float32), s, z, 0.0, False) is None


def test_values_counted_for_the_threshold():
    """File-backed values only; a MatMulNBits byte holds 8 / bits weights."""
    from initaudit.read.nbits import NBitsLayout, make_decoder
    from initaudit.read.tensors import TensorSource

    file_source = TensorSource("w", TensorProto.FLOAT, (30, 40), FilePayload(0, 0, 4800))
    assert measure_module._file_values(MeasureTask(file_source)) == 1200
    assert measure_module._file_values(MeasureTask(source(TensorProto.FLOAT, (30, 40), bytes(4800)))) == 0
    for bits in (2, 4, 8):
        lay = NBitsLayout(8, 64, bits, 16)
        packed = TensorSource("b", TensorProto.UINT8, lay.stored_shape, FilePayload(0, 0, 8 * lay.row_bytes))
        task = MeasureTask(packed, decoder=make_decoder(lay, np.ones((8, 4), np.float32), None))
        assert measure_module._file_values(task) == 8 * 64


def test_bfloat16_patterns_read_by_the_kernel_directly(compiled):
    """Raw bfloat16 bit patterns go into the kernel as they are (no float32 copy made first)."""
    bits = (RNG.normal(0, 0.3, 5000).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    acc = MomentAccumulator()
    assert acc.add_compiled(bits, "bfloat16")
    assert not MomentAccumulator().add_compiled(bits)  # as uint16 numbers: not a type the kernel reads
    check(acc.result(), reference(_bf16_values(bits)))


def test_without_llvmlite_numpy_does_the_work(monkeypatch):
    """``pip install initaudit`` without the extra: no accelerator, the same statistics from numpy."""
    accel.reset()
    monkeypatch.setitem(sys.modules, "llvmlite", None)  # ``import llvmlite`` now raises ImportError
    monkeypatch.setitem(sys.modules, "llvmlite.binding", None)
    assert not accel.prepare() and not accel.ready()
    x = RNG.normal(0.1, 0.3, 5000).astype(np.float32)
    assert accel.power_sums(x, 0.0) is None
    check(stats_of(x), reference(x), kurt_rel=1e-5)
    accel.reset()
