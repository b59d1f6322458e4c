"""The HTML report rendered by a real browser (headless Chromium): not blank, the table and chart drawn,
the inline script sorting, filtering and unfolding from disk with no network; at 1400 px nothing runs off
the page; printed to PDF (landscape) every column of a flagged layer is in the text, the table header
repeats on each page it spans.  At 5, 60 and 600 layers of the trained-like sign-off fixtures."""
from __future__ import annotations

import re
import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from browser import CHROMIUM, PDFTOTEXT, dump_dom, pdf_pages, pdf_text, print_pdf, probe, screenshot
from signoffkit import layer_name, planted, signoff_model
from test_scale import make_big

import initaudit
from initaudit.report.formats import render
from initaudit.report.provenance import with_provenance

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium; "
                                                          ".ci/run installs it)")
needs_poppler = pytest.mark.skipif(PDFTOTEXT is None, reason="poppler-utils (pdftotext, pdfinfo) is not installed")
HEADER_BG = (0xE6, 0xEC, 0xF5)   # thead th background in the page's style
FAIL_RED = (0xC6, 0x28, 0x28)
SIZES = (5, 60, 600)


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


def _longest_run(row: bytes, color: bytes) -> int:
    match = np.all(np.frombuffer(row, np.uint8).reshape(-1, 3) == np.frombuffer(color, np.uint8), axis=1)
    padded = np.concatenate(([0], match.astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max()) if edges.size else 0


def _assert_drawn(shot: bytes, width: int, height: int) -> None:
    w, h, rows = _png_pixels(shot)
    assert (w, h) == (width, height)
    image = np.frombuffer(b"".join(rows), np.uint8).reshape(h, w, 3)
    assert int(np.count_nonzero(np.any(image != 255, axis=2))) > 0.03 * w * h  # text, chart and table drawn
    assert max(_longest_run(row, bytes(HEADER_BG)) for row in rows) > 600   # the header row spans the page
    assert np.any(np.all(image == np.array(FAIL_RED, np.uint8), axis=2))    # the red of failing layers


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[int, Path]:
    """The trained-profile report of each sign-off fixture, with its provenance, as the CLI writes it."""
    folder = tmp_path_factory.mktemp("signoff")
    out = {}
    for n in SIZES:
        path = signoff_model(folder, n)
        report = with_provenance(initaudit.audit(path, jobs=1, profile="trained", histograms=True),
                                 {"profile": "trained"}, [str(path), "--profile", "trained", "--format", "html"])
        out[n] = folder / f"signoff_{n}.html"
        out[n].write_text(render(report, "html"), encoding="utf-8")
    return out


@pytest.mark.parametrize("case", ["lenet", "600 init layers"])
def test_init_screenshot_is_not_blank_and_shows_the_table(tmp_path, case):
    paths = [SAMPLES / "lenet_torch_default.onnx"] if case == "lenet" else [make_big(tmp_path)]
    page = tmp_path / "report.html"
    page.write_text(render(initaudit.audit(paths, jobs=1, histograms=True), "html"), encoding="utf-8")
    _assert_drawn(screenshot(page, tmp_path / "shot.png", 1400, 900), 1400, 900)
    assert 'aria-label="variance ratio per layer"' in page.read_text()  # the init profile keeps its chart


@pytest.mark.parametrize("n", SIZES)
def test_trained_screenshot_at_1400_px_and_nothing_runs_off_the_page(pages, tmp_path, n):
    _assert_drawn(screenshot(pages[n], tmp_path / "shot.png", 1400, 2000), 1400, 2000)  # below the headline
    html = pages[n].read_text()
    assert 'aria-label="trained-model review per layer"' in html and 'aria-label="variance ratio' not in html
    # the page is exactly as wide as the window: every table fits or scrolls inside its own box
    widths = probe(pages[n], "[document.documentElement.scrollWidth, document.documentElement.clientWidth, "
                             "Array.prototype.every.call(document.querySelectorAll('table'), function(t){ "
                             "return t.parentNode.classList.contains('box'); })]")
    scroll, client, boxed = widths.split(",")
    assert int(scroll) <= int(client) == 1400 and boxed == "true"


def test_script_sorts_and_counts_from_disk(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render(initaudit.audit(SAMPLES / "lenet_torch_default.onnx", histograms=True), "html"))
    dom = dump_dom(page, "#sort=ratio-desc")
    assert "sorted-desc" in dom
    order = re.findall(r'<tr id="m0-(\d+)"', dom)
    # ratios of conv1..fc3 (#1..#5): 0.464, 0.636, 0.218, 0.284, 0.197: descending is #2, #1, #4, #3, #5
    assert order == ["2", "1", "4", "3", "5"]


def test_ok_layers_are_folded_flagged_first_and_one_click_away(pages, tmp_path):
    dom = dump_dom(pages[60])
    rows = re.findall(r'<tr id="m0-(\d+)" data-status="(\w+)"( style="display: none;")?', dom)
    flagged = [i + 1 for i in range(60) if planted(i) is not None and not (planted(i) == "IA402" and i % 10 == 8)]
    fails = [i + 1 for i in range(60) if planted(i) == "IA401"]
    assert [int(n) for n, _, _ in rows[:18]] == fails + [n for n in flagged if n not in fails]
    assert all(status != "ok" and not hidden for _, status, hidden in rows[:18])
    assert len(rows) == 60 and all(status == "ok" and hidden for _, status, hidden in rows[18:])
    assert re.search(r'<span id="shown0">18</span> of 60', dom)
    # a link to a folded layer (the findings list one with a single dead unit: IA402 info) unfolds the table
    info_layer = 9  # layer i = 8: 1 of 32 units dead
    opened = dump_dom(pages[60], f"#m0-{info_layer}")
    assert re.search(rf'<tr id="m0-{info_layer}" data-status="ok"( style="")?>', opened)
    assert re.search(r'<span id="shown0">60</span> of 60', opened)


class _Row(HTMLParser):
    """The text of each cell of one table row (by id) of a page."""

    def __init__(self, row_id: str) -> None:
        super().__init__()
        self.row_id, self.inside, self.cells = row_id, False, []  # type: ignore[var-annotated]

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.inside = dict(attrs).get("id") == self.row_id
        elif tag == "td" and self.inside:
            self.cells.append("")

    def handle_endtag(self, tag):
        if tag == "tr":
            self.inside = False

    def handle_data(self, data):
        if self.inside and self.cells:
            self.cells[-1] += data


def _cells(html: str, number: int) -> list[str]:
    parser = _Row(f"m0-{number}")
    parser.feed(html)
    return parser.cells


def _squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


@needs_poppler
@pytest.mark.parametrize("n", SIZES)
def test_printed_pdf_has_every_column_of_flagged_layers(pages, tmp_path, n):
    pdf = print_pdf(pages[n], tmp_path / "report.pdf")
    count, (width, height) = pdf_pages(pdf)
    assert width > height                                  # landscape
    text = pdf_text(pdf)
    flat = _squeezed(text)
    html = pages[n].read_text()
    kinds = {}
    for i in range(n):                                     # one flagged layer of each planted kind
        code = planted(i)
        if code is not None and not (code == "IA402" and i % 10 == 8):
            kinds.setdefault(code, i + 1)
    assert set(kinds) == ({"IA401"} if n == 5 else {"IA401", "IA402", "IA403", "IA404"})
    for code, number in kinds.items():
        cells = _cells(html, number)
        assert len(cells) == 12 and cells[1] == layer_name(number - 1) and code in cells[5]
        assert _squeezed("".join(cells)) in flat, (n, code, cells)  # every column, in order, none cut
    # the header repeats on every page the table's rows are on
    pages_text = text.split("\f")
    with_rows = [p for p in pages_text if re.search(r"backbone/stages\.\d+/blocks\.\d+/", p) and "Conv" in p
                 and "[32,32,3,3]" in p]
    assert with_rows and all("int8" in p and "dead" in p and "never trained" in p for p in with_rows)
    assert count == len(pages_text) - (1 if pages_text[-1] == "" else 0)
    starts = {p.strip().splitlines()[0] for p in pages_text if p.strip()}
    assert {"Layers", "Findings by rule", "Flagged layers: values against the target"} <= starts  # a page each

