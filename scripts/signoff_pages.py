"""Page heights (screen, 1400 px wide) and PDF page counts of the trained-profile HTML report at
5, 60 and 600 layers (tests/signoffkit.py's conv chains), in headless Chromium.

The height is measured in a 1400 × 900 window, where the layer table scrolls inside its own box
(at most 85 % of the window high), and again with that box let out to the table's full height.

    python scripts/signoff_pages.py [--out DIR] [--screenshot PNG]

``--screenshot`` also saves the top 1400 × 1400 px of the 60-layer page (docs/img/signoff-trained.png).

Run it with another checkout first on ``PYTHONPATH`` to measure that version (the figures before and
after a change to the HTML report).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import page_height, pdf_pages, print_pdf, screenshot  # noqa: E402
from signoffkit import signoff_model  # noqa: E402

import initaudit  # noqa: E402
from initaudit.report.formats import render  # noqa: E402

SIZES = (5, 60, 600)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="keep the pages and PDFs here (default: a temporary folder)")
    parser.add_argument("--screenshot", type=Path, help="save the top of the 60-layer page here (PNG)")
    args = parser.parse_args()
    screenshot_to = args.screenshot.resolve() if args.screenshot else None
    with tempfile.TemporaryDirectory() as scratch:
        out = (args.out or Path(scratch)).resolve()
        out.mkdir(parents=True, exist_ok=True)
        os.chdir(out)  # the models by a short relative path, as a reviewer would name them
        print(f"initaudit from {Path(initaudit.__file__).parent}")
        print(f"{'layers':>6} {'height px':>10} {'expanded':>9} {'PDF pages':>9}  paper (pt)")
        for n in SIZES:
            path = signoff_model(out, n).relative_to(out)
            report = initaudit.audit(path, jobs=1, profile="trained", histograms=True)
            try:  # the provenance block the command line adds (not in versions without it)
                from initaudit.report.provenance import with_provenance

                report = with_provenance(report, {"profile": "trained"}, [str(path), "--profile", "trained",
                                                                          "--format", "html"])
            except ImportError:
                pass
            page = out / f"signoff_{n}.html"
            page.write_text(render(report, "html"), encoding="utf-8")
            pages, size = pdf_pages(print_pdf(page, out / f"signoff_{n}.pdf"))
            expanded = page_height(page, style=".box.rows{max-height:none}")
            print(f"{n:>6} {page_height(page):>10} {expanded:>9} {pages:>9}  {size[0]:g} x {size[1]:g}")
            if n == 60 and screenshot_to is not None:
                screenshot(page, screenshot_to, 1400, 1400)
    return 0


if __name__ == "__main__":
    sys.exit(main())
