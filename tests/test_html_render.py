"""The HTML report rendered by a real browser (headless Chromium): not blank, the table and chart drawn,
the inline script sorting and filtering from disk with no network."""
from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from test_scale import make_big

import initaudit
from initaudit.report.formats import render

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium; "
                                                          ".ci/run installs it)")
HEADER_BG = (0xE6, 0xEC, 0xF5)   # thead th background in the page's style
FAIL_RED = (0xC6, 0x28, 0x28)


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    assert CHROMIUM is not None
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Rows of RGB(A) bytes of an 8-bit, non-interlaced PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and interlace == 0 and color in (2, 6)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw, stride, rows = zlib.decompress(idat), width * channels, []
    prev = np.zeros(stride, np.int64)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int64)
        if kind == 1:  # Sub: a running sum per channel
            line = line.reshape(-1, channels).cumsum(axis=0).reshape(-1) % 256
        elif kind == 2:  # Up
            line = (line + prev) % 256
        elif kind in (3, 4):  # Average, Paeth: sequential along the row
            out = [0] * stride
            for i in range(stride):
                a = out[i - channels] if i >= channels else 0
                b, c = int(prev[i]), int(prev[i - channels]) if i >= channels else 0
                if kind == 3:
                    pred = (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                out[i] = (int(line[i]) + pred) & 255
            line = np.array(out, np.int64)
        rows.append(line.reshape(-1, channels)[:, :3].astype(np.uint8).tobytes())
        prev = line
    return width, height, rows


def _screenshot(tmp_path: Path, page: Path) -> tuple[int, int, list[bytes]]:
    shot = tmp_path / "shot.png"
    done = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,900", page.as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    return _png_pixels(shot.read_bytes())


@pytest.mark.parametrize("case", ["lenet", "600 layers"])
def test_screenshot_is_not_blank_and_shows_the_table(tmp_path, case):
    paths = [SAMPLES / "lenet_torch_default.onnx"] if case == "lenet" else [make_big(tmp_path)]
    page = tmp_path / "report.html"
    page.write_text(render(initaudit.audit(paths, jobs=1, histograms=True), "html"), encoding="utf-8")
    width, height, rows = _screenshot(tmp_path, page)
    assert (width, height) == (1280, 900)
    image = np.frombuffer(b"".join(rows), np.uint8).reshape(height, width, 3)
    non_white = int(np.count_nonzero(np.any(image != 255, axis=2)))
    assert non_white > 0.03 * width * height  # text, chart and table drawn
    header = bytes(HEADER_BG)
    runs = [_longest_run(row, header) for row in rows]
    assert max(runs) > 600  # the table's header row spans most of the page width
    assert np.any(np.all(image == np.array(FAIL_RED, np.uint8), axis=2))  # the red of failing layers (dots, badge)


def _longest_run(row: bytes, color: bytes) -> int:
    match = np.all(np.frombuffer(row, np.uint8).reshape(-1, 3) == np.frombuffer(color, np.uint8), axis=1)
    padded = np.concatenate(([0], match.astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max()) if edges.size else 0


def test_script_sorts_and_counts_from_disk(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render(initaudit.audit(SAMPLES / "lenet_torch_default.onnx", histograms=True), "html"))
    done = _chromium(tmp_path, "--dump-dom", page.as_uri() + "#sort=ratio-desc")
    dom = done.stdout
    assert 'class="sorted-desc"' in dom or "sorted-desc" in dom, done.stderr[-2000:]
    order = [name for name in ("conv2.weight", "conv1.weight", "fc2.weight", "fc1.weight", "fc3.weight")]
    positions = [dom.index(f"<td class=\"l\">{name}</td>") for name in order]
    assert positions == sorted(positions)  # ratios 0.636, 0.464, 0.284, 0.218, 0.197: descending
