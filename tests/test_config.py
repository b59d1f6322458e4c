"""``[tool.initaudit]`` (cli.config): the keys that say which files a run reads — exclude, extend-exclude,
per-file-ignores — their validation, and the project root relative patterns are anchored to."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from initaudit.cli.config import config_file, load_config
from initaudit.cli.main import main
from initaudit.errors import InitauditError
from initaudit.pipeline.per_file import PerFileIgnore

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def _project(tmp_path: Path, config: str) -> Path:
    (tmp_path / "pyproject.toml").write_text("[tool.initaudit]\n" + config, encoding="utf-8")
    for name, sample in (("models/good.onnx", "lenet_xavier.onnx"), ("models/legacy/old.onnx", "lenet_torch_default.onnx"),
                         ("models/scratch_tmp.onnx", "lenet_std1.onnx"), (".cache/x.onnx", "lenet_std1.onnx")):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLES / sample, tmp_path / name)
    return tmp_path


def _paths(capsys, *args) -> tuple[int, list[str]]:
    code = main([*map(str, args), "-f", "json", "-j", "1"])
    data = json.loads(capsys.readouterr().out)
    models = data["models"] if "models" in data else [data]
    return code, [m["model"]["path"] for m in models]


def test_exclude_keys_are_read_and_validated(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text('[tool.initaudit]\nexclude = "legacy"\nextend-exclude = ["./tmp/", "*_old.onnx"]\n')
    assert load_config(str(path)) == {"exclude": ["legacy"], "extend_exclude": ["tmp/", "*_old.onnx"]}
    path.write_text('[tool.initaudit]\nextend-exclude = [1]\n')
    with pytest.raises(InitauditError, match="pyproject.toml: extend-exclude must be a glob or a list of globs"):
        load_config(str(path))
    path.write_text('[tool.initaudit]\nexclude = [""]\n')
    with pytest.raises(InitauditError, match="empty pattern"):
        load_config(str(path))


def test_per_file_ignores_are_read_and_validated(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text('[tool.initaudit.per-file-ignores]\n"models/legacy/" = ["ia102", "IA104"]\n"*_int8.onnx" = "IA2"\n')
    assert load_config(str(path))["per_file_ignores"] == (PerFileIgnore("models/legacy/", ("IA102", "IA104")),
                                                          PerFileIgnore("*_int8.onnx", ("IA2",)))
    for body, needle in (('"x" = ["IA999"]', "unknown rule code 'IA999'"), ('"x" = []', "expected a list of rule codes"),
                         ('"x" = 3', "expected a list of rule codes")):
        path.write_text(f"[tool.initaudit.per-file-ignores]\n{body}\n")
        with pytest.raises(InitauditError, match=needle):
            load_config(str(path))
    path.write_text('[tool.initaudit]\nper-file-ignores = ["IA102"]\n')
    with pytest.raises(InitauditError, match="per-file-ignores must be a table"):
        load_config(str(path))


def test_the_config_file_is_the_project_root(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("[tool.initaudit]\n")
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    assert config_file(None) == tmp_path.resolve() / "pyproject.toml"
    assert config_file(os.devnull) is None
    assert config_file("elsewhere.toml") == Path("elsewhere.toml")


def test_config_excludes_apply_to_the_walk_anchored_at_the_project_root(tmp_path, monkeypatch, capsys):
    _project(tmp_path, 'extend-exclude = ["models/legacy", "*_tmp.onnx"]\n')
    monkeypatch.chdir(tmp_path)
    assert _paths(capsys, ".") == (0, ["models/good.onnx"])
    monkeypatch.chdir(tmp_path / "models")  # from a subfolder: the pattern is still the project's models/legacy
    assert _paths(capsys, ".") == (0, ["good.onnx"])
    assert _paths(capsys, "legacy/old.onnx")[1] == ["legacy/old.onnx"]  # named: never excluded


def test_cli_exclude_replaces_config_and_defaults_and_extend_exclude_adds(tmp_path, monkeypatch, capsys):
    """As in ruff: --exclude replaces `exclude` (and the defaults: .cache is walked again); every
    extend-exclude, of the config and of the command line, still adds."""
    _project(tmp_path, 'extend-exclude = ["*_tmp.onnx"]\n')
    monkeypatch.chdir(tmp_path)
    code, paths = _paths(capsys, ".", "--exclude", "legacy")
    assert paths == [".cache/x.onnx", "models/good.onnx"] and code == 1   # .cache holds lenet_std1
    assert main(["models", "--extend-exclude", "legacy/,good.onnx"]) == 2
    err = capsys.readouterr().err
    assert err == ("initaudit: error: models: no *.onnx file in this folder (excluded: legacy/, good.onnx, "
                   "scratch_tmp.onnx; name it on the command line, or see `exclude`)\n")


def test_per_file_ignores_drop_codes_from_matching_models_only(tmp_path, monkeypatch, capsys):
    """models/legacy/old.onnx holds PyTorch's default init: 4 IA101, 1 IA102, 1 IA104 under Xavier."""
    _project(tmp_path, 'extend-exclude = ["*_tmp.onnx"]\n\n[tool.initaudit.per-file-ignores]\n'
                       '"models/legacy/" = ["IA1"]\n')
    shutil.copy(SAMPLES / "lenet_torch_default.onnx", tmp_path / "models" / "same.onnx")
    monkeypatch.chdir(tmp_path)
    code = main(["models", "-f", "json", "-j", "1"])
    data = {m["model"]["path"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    legacy, same = data["models/legacy/old.onnx"], data["models/same.onnx"]
    assert legacy["status"] == "ok" and legacy["summary"]["ok"] == 5 and legacy["findings"] == []
    assert all(not layer["findings"] for layer in legacy["layers"])
    assert same["summary"] == {**same["summary"], "fail": 4, "warn": 1}  # the same weights elsewhere: reported
    assert code == 1
    monkeypatch.chdir(tmp_path / "models" / "legacy")  # the pattern is the project's, wherever the run starts
    assert main(["old.onnx", "-j", "1"]) == 0
    capsys.readouterr()
