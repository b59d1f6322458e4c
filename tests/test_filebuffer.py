"""Large model files are walked with pread through a window, with the same result as through mmap."""
from __future__ import annotations

import mmap
import os

import numpy as np
import pytest
from modelkit import model, save, tensor
from onnx import helper

import initaudit
from initaudit.read import filebuffer, loader
from initaudit.read.filebuffer import FileBuffer
from initaudit.read.protoscan import strip_payloads


def test_indexing_matches_bytes(tmp_path, monkeypatch):
    data = bytes(np.random.default_rng(3).integers(0, 256, 10_000, dtype=np.uint8))
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    monkeypatch.setattr(filebuffer, "WINDOW", 100)
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = FileBuffer(fd, len(data))
        assert len(buf) == len(data)
        for i in (0, 1, 99, 100, 101, 5_000, 9_999, -1):
            assert buf[i] == data[i]
        for a, b in ((0, 0), (0, 10), (95, 105), (150, 160), (9_990, 10_000), (9_990, 20_000), (0, 10_000)):
            assert buf[a:b] == data[a:b]
        with pytest.raises(IndexError):
            buf[10_000]
    finally:
        os.close(fd)


def test_stripped_model_is_the_same(tmp_path, monkeypatch):
    weights = [np.random.default_rng(i).normal(0, 0.05, (64, 96)).astype(np.float32) for i in range(3)]
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h0"]), helper.make_node("MatMul", ["h0", "w1"], ["h1"]),
             helper.make_node("MatMul", ["h1", "w2"], ["y"])]
    path = save(model(nodes, [tensor(f"w{i}", w) for i, w in enumerate(weights)]), tmp_path)
    monkeypatch.setattr(filebuffer, "WINDOW", 64)
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped:
            through_mmap = strip_payloads(mapped)
        through_pread = strip_payloads(FileBuffer(fd, size))
    finally:
        os.close(fd)
    assert through_pread.payloads == through_mmap.payloads == 3
    assert through_pread.data.replace(through_pread.marker.encode(), b"") == \
        through_mmap.data.replace(through_mmap.marker.encode(), b"")
    mapped_report = initaudit.audit(path)
    monkeypatch.setattr(loader, "MMAP_MAX_BYTES", 0)
    pread_report = initaudit.audit(path)
    assert [layer.stats for layer in pread_report.models[0].layers] == \
        [layer.stats for layer in mapped_report.models[0].layers]
