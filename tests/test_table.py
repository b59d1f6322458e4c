"""The terminal table (``--format table``, the default): quiet mode, the summary above a long table, a batch's
grand total, ``--statistics``; on the sign-off fixtures, whose defects are planted layer by layer."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from signoffkit import layer_name, planted, signoff_model

import initaudit
from initaudit.report.formats import render
from initaudit.report.formats.table import statistics

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def flagged(n: int) -> list[int]:
    """Layers whose planted defect is a warning or a failure: every one but a single dead unit (3 %: info)."""
    return [i for i in range(n) if planted(i) is not None and not (planted(i) == "IA402" and i % 10 == 8)]


@pytest.fixture(scope="module")
def sixty(tmp_path_factory):
    folder = tmp_path_factory.mktemp("table")
    return initaudit.audit([signoff_model(folder, 60), signoff_model(folder, 5)], profile="trained", jobs=1)


def test_quiet_lists_the_flagged_layers_their_findings_and_the_summary(sixty):
    text = render(sixty, "table", quiet=True)
    rows = [line.split()[0] for line in text.splitlines() if line.startswith("backbone/")]
    assert rows == [layer_name(i) for i in flagged(60)] + [layer_name(i) for i in flagged(5)]
    assert len(rows) == 18 + 1
    notes = [line for line in text.splitlines() if line.startswith("  backbone/")]
    assert len(notes) == 18 + 1 and all(re.search(r": IA40[1-4] (warn|fail): ", line) for line in notes)
    assert "60 weights — 42 ok, 12 warn, 6 fail" in text and "5 weights — 4 ok, 0 warn, 1 fail" in text
    full = render(sixty, "table")
    assert sum(line.startswith("backbone/") for line in full.splitlines()) == 65  # every row without -q


def test_a_long_table_starts_with_its_summary_too(sixty):
    blocks = render(sixty, "table").split("\n\n")
    sixty_lines, five_lines = blocks[0].splitlines(), blocks[1].splitlines()
    assert sixty_lines[0].endswith("60 weights — 42 ok, 12 warn, 6 fail (target xavier, convention connectivity, "
                                   "profile trained)")
    assert sixty_lines[-1] == sixty_lines[0]
    assert five_lines[0].startswith("layer ")  # 5 rows fit a screen: the summary only at the end
    quiet = render(sixty, "table", quiet=True).split("\n\n")[0].splitlines()
    assert quiet[0].startswith("layer ")       # 18 flagged rows: no need to repeat it either


def test_a_batch_ends_with_a_grand_total(sixty, tmp_path):
    text = render(sixty, "table")
    assert text.splitlines()[-1] == "total: 2 models, 65 weights — 46 ok, 12 warn, 7 fail; 2 models failing"
    (tmp_path / "cut.onnx").write_bytes((SAMPLES / "lenet_xavier.onnx").read_bytes()[:3000])
    batch = initaudit.audit([SAMPLES / "lenet_xavier.onnx", tmp_path / "cut.onnx"], errors="report", jobs=1)
    assert render(batch, "table").splitlines()[-1] == "total: 2 models, 5 weights — 5 ok, 0 warn, 0 fail; 1 unreadable"
    one = initaudit.audit(SAMPLES / "lenet_xavier.onnx", jobs=1)
    assert "total:" not in render(one, "table")


def test_statistics_counts_findings_per_rule_code(sixty):
    lines = statistics(sixty).splitlines()
    # 65 layers: i % 10 == 3 never trained (6 + 1), i % 10 == 6 and 8 dead units (6 warn, 6 info),
    # i % 20 == 9 scale (3), i % 20 == 19 int8 (3)
    assert [line.split(None, 3) for line in lines] == [
        ["12", "IA402", "dead-units", "6 warn, 6 info"],
        ["7", "IA401", "never-trained-layer", "7 fail"],
        ["3", "IA403", "scale-outlier", "3 warn"],
        ["3", "IA404", "int8-hostile-outlier", "3 warn"],
    ]
    clean = initaudit.audit(SAMPLES / "lenet_xavier.onnx", jobs=1)
    assert statistics(clean) == "no findings\n"
