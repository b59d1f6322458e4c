"""Which files a run reads (``pipeline.paths``): the folder walk and its excludes (ruff's rules), the
names on the command line, a lone external-data file standing for its model."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from initaudit.errors import InitauditError
from initaudit.pipeline.paths import Exclude, expand, model_of_data, name_matches

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
MODEL = SAMPLES / "lenet_xavier.onnx"


def _tree(root: Path, files: list[str]) -> None:
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(MODEL, root / name)


def _names(found: list[Path], root: Path) -> list[str]:
    return [p.resolve().relative_to(root.resolve()).as_posix() for p in found]


CHECKOUT = ["models/a.onnx", "models/sub/b.onnx", ".venv/lib/onnx/backend/test/data/m.onnx", ".git/lfs/x.onnx",
            "venv/y.onnx", "node_modules/pkg/z.onnx", "models/__pycache__/c.onnx", "models/.cache/d.onnx",
            "models/.hidden.onnx", "legacy/old.onnx"]


def test_default_excludes_skip_environments_caches_and_hidden_folders(tmp_path, monkeypatch):
    _tree(tmp_path, CHECKOUT)
    monkeypatch.chdir(tmp_path)
    # hidden *files* are models like any other; hidden folders are not entered
    assert _names(expand(["."]), tmp_path) == ["legacy/old.onnx", "models/.hidden.onnx", "models/a.onnx",
                                                "models/sub/b.onnx"]


def test_exclude_replaces_the_defaults_and_extend_exclude_adds(tmp_path, monkeypatch):
    _tree(tmp_path, CHECKOUT)
    monkeypatch.chdir(tmp_path)
    replaced = _names(expand(["."], Exclude.of(["legacy", ".git"])), tmp_path)
    assert ".venv/lib/onnx/backend/test/data/m.onnx" in replaced and "venv/y.onnx" in replaced
    assert "legacy/old.onnx" not in replaced and ".git/lfs/x.onnx" not in replaced
    extended = _names(expand(["."], Exclude.of(None, ["legacy", "*/sub/*.onnx"])), tmp_path)
    assert extended == ["models/.hidden.onnx", "models/a.onnx"]


@pytest.mark.parametrize("pattern,name,relative,is_dir,expected", [
    (".venv", ".venv", "a/.venv", True, True),          # a name at any depth
    (".venv", ".venv", ".venv", False, True),           # ... a file of that name too
    (".*/", ".cache", "m/.cache", True, True),          # folders only
    (".*/", ".x.onnx", "m/.x.onnx", False, False),
    ("*_old.onnx", "v1_old.onnx", "deep/v1_old.onnx", False, True),
    ("models/legacy", "legacy", "models/legacy", True, True),   # with a slash: the path from the root
    ("models/legacy", "legacy", "other/models/legacy", True, False),
    ("**/tmp", "tmp", "tmp", True, True),
    ("exports/*/tmp", "tmp", "exports/a/tmp", True, True),
    ("models/legacy", "legacy", None, True, False),       # outside the root: only name patterns apply
])
def test_pattern_rules(pattern, name, relative, is_dir, expected):
    assert name_matches(pattern, name, relative, is_dir) is expected


def test_relative_patterns_are_anchored_to_the_root_not_the_working_directory(tmp_path, monkeypatch):
    _tree(tmp_path, ["models/legacy/a.onnx", "models/new/b.onnx"])
    monkeypatch.chdir(tmp_path / "models")
    found = expand(["."], Exclude.of(None, ["models/legacy"], root=tmp_path))
    assert _names(found, tmp_path) == ["models/new/b.onnx"]
    found = expand(["."], Exclude.of(None, ["models/legacy"]))  # root = cwd: no "models/" below it
    assert _names(found, tmp_path) == ["models/legacy/a.onnx", "models/new/b.onnx"]


def test_a_path_named_on_the_command_line_is_never_excluded(tmp_path, monkeypatch):
    _tree(tmp_path, CHECKOUT)
    monkeypatch.chdir(tmp_path)
    assert _names(expand([".venv"]), tmp_path) == [".venv/lib/onnx/backend/test/data/m.onnx"]
    assert _names(expand(["legacy/old.onnx"], Exclude.of(None, ["legacy"])), tmp_path) == ["legacy/old.onnx"]
    assert _names(expand(["models/.cache/d.onnx"]), tmp_path) == ["models/.cache/d.onnx"]
    # inside a named folder the patterns still apply
    assert _names(expand(["models"]), tmp_path) == ["models/.hidden.onnx", "models/a.onnx", "models/sub/b.onnx"]


def test_a_folder_with_only_excluded_models_says_so(tmp_path, monkeypatch):
    _tree(tmp_path, [".venv/m.onnx", "node_modules/n.onnx"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InitauditError) as error:
        expand(["."])
    assert str(error.value) == (".: no *.onnx file in this folder (excluded: .venv/, node_modules/; name it on "
                                "the command line, or see `exclude`)")


def test_the_walk_finds_what_rglob_found_in_the_same_order(tmp_path):
    _tree(tmp_path, ["b/z.onnx", "a/y.onnx", "a/b/x.onnx", "c.onnx", "a.onnx"])
    (tmp_path / "d.onnx").mkdir()  # a folder named like a model is not one
    (tmp_path / "notes.txt").write_text("x")
    expected = sorted(p for p in tmp_path.rglob("*.onnx") if p.is_file())
    assert expand([tmp_path]) == expected


def test_external_data_named_alone_stands_for_its_model(tmp_path):
    _tree(tmp_path, ["m.onnx", "n.onnx"])
    (tmp_path / "m.onnx.data").write_bytes(b"x")
    (tmp_path / "n.onnx_data").write_bytes(b"x")
    (tmp_path / "gone.onnx.data").write_bytes(b"x")
    assert model_of_data(tmp_path / "m.onnx.data") == tmp_path / "m.onnx"
    assert model_of_data(tmp_path / "n.onnx_data") == tmp_path / "n.onnx"
    assert model_of_data(tmp_path / "gone.onnx.data") is None  # no model next to it: left as given
    assert model_of_data(tmp_path / "m.onnx") is None
    # a pre-commit run on the model and its data audits the model once
    found = expand([tmp_path / "m.onnx.data", tmp_path / "m.onnx", tmp_path / "n.onnx_data", tmp_path / "gone.onnx.data"])
    assert found == [tmp_path / "m.onnx", tmp_path / "n.onnx", tmp_path / "gone.onnx.data"]


@pytest.mark.parametrize("bad", ["", "  ", "/"])
def test_an_empty_pattern_is_refused(bad):
    with pytest.raises(InitauditError, match="empty pattern"):
        Exclude.of(None, [bad])
