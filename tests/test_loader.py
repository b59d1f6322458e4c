"""Reading a model file (``initaudit/read/loader.py``): external data at any offset, refused outside the
model's folder or through a second hard link, missing, short or of the wrong length; sparse initializers
made dense; a large inline payload read from the file, not parsed into memory."""
from __future__ import annotations

import os

import numpy as np
import pytest
from modelkit import model, save, tensor, xavier_uniform
from onnx import TensorProto, helper

import initaudit
import initaudit.read.loader
from initaudit.errors import InitauditError
from initaudit.read.tensors import FilePayload

RNG = np.random.default_rng(7)


def layers(path, **options):
    return {layer.name: layer for layer in initaudit.audit(path, **options).models[0].layers}


def test_external_data_aligned_and_not(tmp_path):
    w1 = xavier_uniform(RNG, (64, 48), 64, 48)
    w2 = xavier_uniform(RNG, (48, 8), 48, 8)
    m = model([helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["y"])],
              [tensor("w1", w1), tensor("w2", w2)])
    raw = w1.tobytes() + b"\x00" * 3 + w2.tobytes()  # w2 at an offset that is not 4-byte aligned
    (tmp_path / "weights.bin").write_bytes(raw)
    for init, offset, length in ((m.graph.initializer[0], 0, w1.nbytes),
                                 (m.graph.initializer[1], w1.nbytes + 3, w2.nbytes)):
        init.ClearField("raw_data")
        init.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "weights.bin"), ("offset", str(offset)), ("length", str(length))):
            init.external_data.add(key=key, value=value)
    found = layers(save(m, tmp_path))
    assert found["w1"].storage == "external" and found["w2"].storage == "external"
    assert found["w1"].stats.var == pytest.approx(float(w1.astype(np.float64).var()), rel=1e-9)
    assert found["w2"].stats.var == pytest.approx(float(w2.astype(np.float64).var()), rel=1e-9)


def _external_model(tmp_path, location: str, length: int | None = None):
    w = xavier_uniform(RNG, (16, 8), 16, 8)
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("w", w)])
    init = m.graph.initializer[0]
    init.ClearField("raw_data")
    init.data_location = TensorProto.EXTERNAL
    init.external_data.add(key="location", value=location)
    init.external_data.add(key="length", value=str(length if length is not None else w.nbytes))
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    return save(m, folder), w


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin", "link.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path, location):
    path, w = _external_model(tmp_path, location)
    (tmp_path / "secret.bin").write_bytes(w.tobytes())
    (path.parent / "link.bin").symlink_to(tmp_path / "secret.bin")
    with pytest.raises(InitauditError, match="refusing|not a plain relative path"):
        initaudit.audit(path)


def test_external_data_problems(tmp_path):
    path, w = _external_model(tmp_path, "w.bin")
    with pytest.raises(InitauditError, match="not found"):
        initaudit.audit(path)
    (path.parent / "w.bin").write_bytes(w.tobytes()[:100])
    with pytest.raises(InitauditError, match="past the end"):
        initaudit.audit(path)
    path, w = _external_model(tmp_path, "w.bin", length=12)
    with pytest.raises(InitauditError, match="does not match"):
        initaudit.audit(path)


def test_sparse_initializer(tmp_path):
    dense = xavier_uniform(RNG, (32, 16), 32, 16)
    dense[np.abs(dense) < 0.1] = 0
    flat = np.flatnonzero(dense)
    sparse = helper.make_sparse_tensor(tensor("w", dense.ravel()[flat]), tensor("w_idx", flat.astype(np.int64)),
                                       [32, 16])
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [])
    m.graph.sparse_initializer.append(sparse)
    layer = layers(save(m, tmp_path))["w"]
    assert (layer.fan_in, layer.fan_out) == (32, 16)
    assert layer.stats.zeros == dense.size - flat.size
    assert layer.stats.var == pytest.approx(float(dense.astype(np.float64).var()), rel=1e-9)


def test_external_data_with_a_second_hard_link_is_refused(tmp_path):
    path, w = _external_model(tmp_path, "w.bin")
    (path.parent / "w.bin").write_bytes(w.tobytes())
    os.link(path.parent / "w.bin", tmp_path / "elsewhere.bin")
    with pytest.raises(InitauditError, match="hard links"):
        initaudit.audit(path)


def test_large_inline_payload_is_read_from_the_file(tmp_path):
    values = RNG.normal(0, 0.02, (512, 256)).astype(np.float32)  # 512 KiB: stripped before parsing
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("w", values)])
    path = save(m, tmp_path)
    loaded = initaudit.read.loader.load_model(path)
    try:
        assert loaded.proto.graph.initializer[0].data_location == TensorProto.EXTERNAL
        source = loaded.source(loaded.proto.graph.initializer[0])
        assert isinstance(source.payload, FilePayload) and source.location == "inline"
        assert np.array_equal(source.to_array(), values)
    finally:
        loaded.close()


def _lfs_pointer(data: bytes) -> bytes:
    """What a checkout without ``git lfs pull`` leaves in place of a file (the LFS spec's three lines)."""
    import hashlib

    return (b"version https://git-lfs.github.com/spec/v1\n"
            + f"oid sha256:{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n".encode())


def test_a_git_lfs_pointer_is_named_as_one(tmp_path, capsys):
    from initaudit.cli.main import main

    pointer = tmp_path / "model.onnx"
    pointer.write_bytes(_lfs_pointer(b"x" * 123456))
    with pytest.raises(InitauditError) as raised:
        initaudit.audit(pointer)
    assert str(raised.value) == (f"{pointer}: this is a Git LFS pointer, not the file itself: fetch the object "
                                 "(git lfs pull)")
    assert main([str(pointer)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "git lfs pull" in err and "wire type" not in err


def test_external_data_that_is_a_git_lfs_pointer(tmp_path):
    path, w = _external_model(tmp_path, "w.bin")
    (path.parent / "w.bin").write_bytes(_lfs_pointer(w.tobytes()))
    with pytest.raises(InitauditError, match=r"^tensor 'w': external data 'w.bin' is a Git LFS pointer, not the "
                                             r"file itself: fetch the object \(git lfs pull\)$"):
        initaudit.audit(path)
