"""A model path or an external-data location that is not a regular file: one line, exit 2, at once.

Each case runs the CLI in a subprocess with a timeout, so a regression (opening a FIFO for reading
blocks until a writer appears) fails the test instead of hanging the suite.
"""
from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from modelkit import model, save, tensor
from onnx import TensorProto, helper

TIMEOUT = 20  # seconds; a correct run takes well under 2


def run_cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "initaudit", *map(str, args)],
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd)


def assert_refused(result: subprocess.CompletedProcess, words: str, listed: bool = True) -> None:
    """Exit 2 at once with one line on stderr; a refused model is still listed in the report (IA001),
    a usage error (a folder without models, a bad config) stops before there is a report."""
    assert result.returncode == 2, result.stderr
    if listed:
        assert result.stdout.count("\n") == 1 and "could not be read (IA001)" in result.stdout
        assert words in result.stdout
    else:
        assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert words in result.stderr


def make_fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def make_socket(path: Path) -> Path:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()  # the socket file stays on disk
    return path


def make_char_device(path: Path) -> Path:
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # like /dev/zero: never ends
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here: {exc}")
    return path


def make_folder(path: Path) -> Path:
    path.mkdir()
    return path


KINDS = {
    "fifo": (make_fifo, "named pipe"),
    "socket": (make_socket, "socket"),
    "device": (make_char_device, "character device"),
    "folder": (make_folder, "folder"),
}

needs_posix = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX special files")


@needs_posix
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_model_path_that_is_not_a_regular_file(tmp_path, kind):
    make, words = KINDS[kind]
    path = make(tmp_path / "model.onnx")
    assert_refused(run_cli(path, cwd=tmp_path), words, listed=kind != "folder")


@needs_posix
def test_model_path_symlink_to_a_fifo(tmp_path):
    fifo = make_fifo(tmp_path / "pipe")
    (tmp_path / "model.onnx").symlink_to(fifo)
    assert_refused(run_cli(tmp_path / "model.onnx", cwd=tmp_path), "named pipe")


def _external_model(folder: Path, location: str) -> Path:
    w = np.random.default_rng(0).normal(0, 0.2, (16, 8)).astype(np.float32)
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("w", w)])
    init = m.graph.initializer[0]
    init.ClearField("raw_data")
    init.data_location = TensorProto.EXTERNAL
    init.external_data.add(key="location", value=location)
    init.external_data.add(key="length", value=str(w.nbytes))
    return save(m, folder)


@needs_posix
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_external_data_that_is_not_a_regular_file(tmp_path, kind):
    make, words = KINDS[kind]
    make(tmp_path / "w.bin")
    path = _external_model(tmp_path, "w.bin")
    result = run_cli(path, cwd=tmp_path)
    assert_refused(result, words)
    assert "'w.bin'" in result.stderr


@needs_posix
def test_folder_argument_skips_a_fifo_named_onnx(tmp_path):
    make_fifo(tmp_path / "pipe.onnx")
    save(model([helper.make_node("MatMul", ["x", "w"], ["y"])],
               [tensor("w", np.random.default_rng(1).normal(0, 0.2, (16, 8)).astype(np.float32))]), tmp_path)
    result = run_cli(tmp_path, "--format", "json", cwd=tmp_path)
    assert result.returncode in (0, 1) and '"w"' in result.stdout


@needs_posix
def test_config_that_is_a_fifo(tmp_path):
    fifo = make_fifo(tmp_path / "conf.toml")
    path = save(model([helper.make_node("MatMul", ["x", "w"], ["y"])],
                      [tensor("w", np.ones((4, 4), np.float32))]), tmp_path)
    result = subprocess.run([sys.executable, "-m", "initaudit", str(path), "--config", str(fifo)],
                            capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert_refused(result, "not a regular file", listed=False)
