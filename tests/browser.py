"""Headless Chromium (Debian's ``chromium``) and poppler's ``pdftotext`` / ``pdfinfo`` for the HTML
report's render tests and scripts/signoff_pages.py: a page's height on screen, a screenshot, a
print-to-PDF with its page count and text.  Every call gets a fresh profile and no network."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PDFTOTEXT = shutil.which("pdftotext")
PDFINFO = shutil.which("pdfinfo")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars")


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="initaudit-chromium-") as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=300)


def probe(page: Path, expression: str, width: int = 1400, height: int = 900, style: str = "") -> str:
    """A JavaScript expression's value once the page has loaded (its own script run), in a window
    ``width`` × ``height``: a copy of the page with a probe appended (and ``style`` added) reports it in
    its title, read back from the DOM Chromium dumps."""
    copy = page.with_name(page.stem + ".probe.html")
    text = page.read_text(encoding="utf-8")
    if style:
        text = text.replace("</style>", style + "</style>", 1)
    script = f"<script>document.title = 'probe=' + String({expression}) + '=end';</script>"
    copy.write_text(text.replace("</body>", script + "</body>"), encoding="utf-8")
    done = chromium(f"--window-size={width},{height}", "--dump-dom", copy.resolve().as_uri())
    found = re.search(r"<title>probe=(.*?)=end</title>", done.stdout, re.S)
    assert found, done.stderr[-2000:]
    return found.group(1)


def page_height(page: Path, width: int = 1400, style: str = "") -> int:
    """The page's full height in CSS px at a window ``width`` wide."""
    return int(probe(page, "Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)", width,
                     style=style))


def dump_dom(page: Path, fragment: str = "", width: int = 1400) -> str:
    """The DOM after the page's script ran (``fragment``: a ``#…`` the page is opened at)."""
    done = chromium(f"--window-size={width},900", "--dump-dom", page.resolve().as_uri() + fragment)
    assert "</html>" in done.stdout, done.stderr[-2000:]
    return done.stdout


def screenshot(page: Path, shot: Path, width: int = 1400, height: int = 900) -> bytes:
    done = chromium(f"--screenshot={shot}", f"--window-size={width},{height}", page.resolve().as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    return shot.read_bytes()


def print_pdf(page: Path, pdf: Path) -> Path:
    done = chromium("--no-pdf-header-footer", f"--print-to-pdf={pdf}", "--window-size=1400,900", page.resolve().as_uri())
    assert pdf.is_file(), done.stderr[-2000:]
    return pdf


def pdf_pages(pdf: Path) -> tuple[int, tuple[float, float]]:
    """(page count, first page's size in points)."""
    assert PDFINFO is not None
    info = subprocess.run([PDFINFO, str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))  # type: ignore[union-attr]
    size = re.search(r"^Page size:\s+([\d.]+) x ([\d.]+) pts", info, re.M)
    assert size, info
    return pages, (float(size.group(1)), float(size.group(2)))


def pdf_text(pdf: Path, mode: str = "raw") -> str:
    """The PDF's text, pages split by form feeds: ``raw`` in the order it was drawn (a table row's cells one
    after the other), ``layout`` as laid out on the page."""
    assert PDFTOTEXT is not None
    args = [PDFTOTEXT, f"-{mode}", str(pdf), "-"]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout
