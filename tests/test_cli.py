"""The command line end to end: JSON contract, exit codes, bad input."""
from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from modelkit import model, save, tensor, xavier_uniform
from onnx import helper, numpy_helper
from terminal import read_terminal

from initaudit.cli.main import main

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_fans_command(capsys):
    code, out, _ = run(capsys, "fans", "5,5,3,6", "--layout", "HWIO")
    assert code == 0 and "fan_in  75\n" in out and "fan_out 150\n" in out
    code, out, _ = run(capsys, "fans", "400,120", "--layout", "IO")
    assert code == 0 and "fan_in  400\n" in out and "fan_out 120\n" in out
    code, out, _ = run(capsys, "fans", "32,1,3,3", "--layout", "OIHW", "--groups", "32")
    assert "fan_in  9\n" in out and "fan_out 9\n" in out


def test_fans_command_bad_layout(capsys):
    code, out, err = run(capsys, "fans", "5,5,3", "--layout", "HWIO")
    assert code == 2 and out == "" and err.count("\n") == 1 and "has 4 axes" in err


def test_clean_model_exit_0(capsys):
    code, out, err = run(capsys, SAMPLES / "lenet_xavier.onnx")
    assert code == 0 and err == ""
    assert "5 weights — 5 ok, 0 warn, 0 fail" in out


def test_failing_model_exit_1_and_fail_on(capsys):
    assert run(capsys, SAMPLES / "lenet_std1.onnx")[0] == 1
    assert run(capsys, SAMPLES / "lenet_std1.onnx", "--fail-on", "never")[0] == 0
    # torch default: conv2 is a warn (0.61×), fc layers fail
    assert run(capsys, SAMPLES / "lenet_xavier.onnx", "--fail-on", "warn")[0] == 0


def test_json_contract(capsys):
    code, out, _ = run(capsys, SAMPLES / "lenet_torch_default.onnx", "--format", "json")
    data = json.loads(out)
    assert data["initaudit"] and data["schema"] == 1
    assert set(data["model"]) >= {"path", "opset", "producer", "ir_version"}
    assert data["target"] == "xavier" and data["convention"] == "connectivity"
    fields = {"name", "node", "op", "shape", "layout", "groups", "fan_in", "fan_out", "count", "mean", "std",
              "var", "min", "max", "excess_kurtosis", "nonfinite", "zeros", "target", "target_var", "ratio",
              "status", "matches", "distribution", "findings"}
    by_name = {layer["name"]: layer for layer in data["layers"]}
    for layer in data["layers"]:
        assert fields <= set(layer)
        assert "torch_default" in layer["matches"]
        assert layer["distribution"] == "uniform"  # kaiming_uniform_, every layer ≥ 450 values
        assert set(layer["fans"]) == {"connectivity", "pytorch", "keras"}
    conv1 = by_name["conv1.weight"]
    assert conv1["shape"] == [6, 3, 5, 5] and conv1["layout"] == "OIHW"
    assert (conv1["fan_in"], conv1["fan_out"]) == (75, 150)
    assert conv1["target_var"] == pytest.approx(2 / 225)
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(SAMPLES / "lenet_torch_default.onnx")).graph.initializer}
    conv1_var = float(stored["conv1.weight"].astype(np.float64).var())
    assert conv1["var"] == pytest.approx(conv1_var, rel=1e-9)
    assert conv1["ratio"] == pytest.approx(conv1_var / (2 / 225), rel=1e-9)
    fc1 = by_name["fc1.weight"]
    assert (fc1["fan_in"], fc1["fan_out"]) == (400, 120) and fc1["status"] == "fail"
    assert fc1["findings"][0]["code"] == "IA101"
    assert data["summary"] == {"layers": 5, "ok": 0, "warn": 1, "fail": 4, "skipped": 0}
    assert code == 1 and data["exit_code"] == 1


def test_json_several_models(capsys, tmp_path):
    code, out, _ = run(capsys, SAMPLES / "lenet_xavier.onnx", SAMPLES / "lenet_dead_layer.onnx", "--format", "json")
    data = json.loads(out)
    assert data["schema"] == 1 and len(data["models"]) == 2 and code == 1
    dead = {layer["name"]: layer for layer in data["models"][1]["layers"]}["conv2.weight"]
    assert dead["status"] == "fail" and dead["findings"][0]["code"] == "IA202" and dead["matches"] == ["zero"]


def test_folder_argument(capsys):
    code, out, _ = run(capsys, SAMPLES, "--format", "json")
    assert len(json.loads(out)["models"]) == len(list(SAMPLES.glob("*.onnx")))


def test_select_and_ignore(capsys):
    code, out, _ = run(capsys, SAMPLES / "lenet_dead_layer.onnx", "--ignore", "IA202")
    assert code == 0
    code, out, _ = run(capsys, SAMPLES / "lenet_std1.onnx", "--select", "IA2")
    assert code == 0


def test_output_file(capsys, tmp_path):
    target = tmp_path / "report.json"
    code, out, _ = run(capsys, SAMPLES / "lenet_xavier.onnx", "--format", "json", "-o", target)
    assert code == 0 and out == "" and json.loads(target.read_text())["summary"]["ok"] == 5


def test_config_from_pyproject(capsys, tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text('[tool.initaudit]\nfail-on = "never"\nformat = "json"\n')
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, SAMPLES / "lenet_std1.onnx")
    assert code == 0 and json.loads(out)["summary"]["fail"] == 5
    code, _, _ = run(capsys, SAMPLES / "lenet_std1.onnx", "--fail-on", "fail")
    assert code == 1


@pytest.mark.parametrize("make,needle", [
    (lambda d: d / "missing.onnx", "no such file"),
    (lambda d: _write(d / "text.onnx", b"this is not a model\n" * 10), "not"),
    (lambda d: _write(d / "empty.onnx", b""), "not an ONNX model"),
    (lambda d: _write(d / "cut.onnx", (SAMPLES / "lenet_xavier.onnx").read_bytes()[:5000]), "ONNX"),
    (lambda d: d, "no *.onnx"),
])
def test_bad_input_is_one_line_exit_2(capsys, tmp_path, make, needle):
    path = make(tmp_path)
    code, out, err = run(capsys, path)
    assert code == 2
    assert err.startswith("initaudit: error: ") and err.count("\n") == 1 and needle in err
    if path.is_dir():  # a usage error: no report at all
        assert out == ""
    else:  # an unreadable model is still an entry of the report
        assert out.count("\n") == 1 and "IA001" in out and needle in out


def test_bad_option_is_one_line_exit_2(capsys):
    code, out, err = run(capsys, SAMPLES / "lenet_xavier.onnx", "--target", "nope")
    assert code == 2 and err.count("\n") == 1
    code, out, err = run(capsys, SAMPLES / "lenet_xavier.onnx", "--select", "IA999")
    assert code == 2 and "unknown rule code" in err


def test_rules_command(capsys):
    code, out, _ = run(capsys, "rules")
    assert code == 0 and "IA101" in out and "IA901" in out
    code, out, _ = run(capsys, "rules", "ia202")
    assert code == 0 and "How to fix" in out
    assert run(capsys, "rules", "IA000")[0] == 2


def test_python_dash_m_smoke():
    done = subprocess.run([sys.executable, "-m", "initaudit", str(SAMPLES / "lenet_dead_layer.onnx")],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "IA202" in done.stdout and done.stderr == ""
    version = subprocess.run([sys.executable, "-m", "initaudit", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("initaudit ")


def test_nothing_written_next_to_the_model(capsys, tmp_path):
    rng = np.random.default_rng(0)
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("w", xavier_uniform(rng, (64, 32), 64, 32))])
    path = save(m, tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    mtime = path.stat().st_mtime_ns
    assert run(capsys, path)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == before and path.stat().st_mtime_ns == mtime


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_folder_with_a_bad_model_in_parallel(capsys, tmp_path):
    for sample in SAMPLES.glob("*.onnx"):
        (tmp_path / sample.name).write_bytes(sample.read_bytes())
    (tmp_path / "zz_broken.onnx").write_bytes(b"\x08\x07garbage")
    code, out, err = run(capsys, tmp_path, "--jobs", "2")
    assert code == 2 and "zz_broken.onnx" in err and err.count("\n") == 1
    assert out.count("5 weights") == 4 and "zz_broken.onnx: could not be read (IA001)" in out


def test_jobs_do_not_change_the_report(capsys):
    one = run(capsys, SAMPLES, "--format", "json", "--jobs", "1")[1]
    two = run(capsys, SAMPLES, "--format", "json", "--jobs", "2")[1]
    one, two = json.loads(one), json.loads(two)
    first, second = one.pop("provenance"), two.pop("provenance")  # the command and the time differ
    assert one == two and first["options"] == second["options"]
    assert run(capsys, SAMPLES, "--jobs", "0")[0] == 2


def test_f_is_short_for_format(capsys):
    code, out, _ = run(capsys, SAMPLES / "lenet_xavier.onnx", "-f", "json")
    assert code == 0 and json.loads(out)["summary"]["ok"] == 5


@pytest.mark.parametrize("args,hint", [
    (["--fial-on", "warn"], "; did you mean --fail-on?"),
    (["--formt", "json"], "; did you mean --format?"),
    (["--extend-exlude", "x"], "; did you mean --extend-exclude?"),
    (["-f", "jsno"], "; did you mean 'json'?"),
    (["--target", "he", "--convention", "pytroch"], "; did you mean 'pytorch'?"),
    (["--zzzzzz"], ""),
])
def test_a_mistyped_flag_or_choice_names_the_closest_one(capsys, args, hint):
    code, out, err = run(capsys, SAMPLES / "lenet_xavier.onnx", *args)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.endswith(f"{hint} (see `initaudit --help`)\n")
    if not hint:
        assert "did you mean" not in err


@pytest.mark.parametrize("environ,choice,terminal,expected", [
    ({}, "auto", True, True), ({}, "auto", False, False),
    ({"NO_COLOR": "1"}, "auto", True, False), ({"NO_COLOR": ""}, "auto", True, True),   # empty: not set
    ({"FORCE_COLOR": "1"}, "auto", False, True), ({"FORCE_COLOR": "0"}, "auto", False, True),  # any value
    ({"FORCE_COLOR": ""}, "auto", False, False),
    ({"NO_COLOR": "1", "FORCE_COLOR": "1"}, "auto", False, False),                      # NO_COLOR first
    ({"NO_COLOR": "1"}, "always", False, True), ({"FORCE_COLOR": "1"}, "never", True, False),  # the flag wins
])
def test_colour_follows_no_color_force_color_and_the_flag(environ, choice, terminal, expected):
    from initaudit.cli.main import _use_color

    assert _use_color(choice, terminal, environ) is expected
    assert _use_color(choice, terminal, environ, to_file=True) is (choice == "always")  # -o FILE: plain


def test_force_color_colours_a_ci_log_but_not_a_report_file(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")
    _, out, _ = run(capsys, SAMPLES / "lenet_dead_layer.onnx")
    assert "\033[31;1mfail\033[0m" in out  # stdout is not a terminal here, as in a CI log
    run(capsys, SAMPLES / "lenet_dead_layer.onnx", "-o", tmp_path / "r.txt")
    assert "\033[" not in (tmp_path / "r.txt").read_text()
    monkeypatch.setenv("NO_COLOR", "1")
    _, out, _ = run(capsys, SAMPLES / "lenet_dead_layer.onnx")
    assert "\033[" not in out


def test_models_from_a_file_and_from_stdin(capsys, monkeypatch, tmp_path):
    listing = tmp_path / "models.txt"
    listing.write_bytes(f"{SAMPLES / 'lenet_xavier.onnx'}\r\n\n  \n{SAMPLES / 'lenet_std1.onnx'}\n".encode())
    code, out, _ = run(capsys, "--models-from", listing, "-f", "json", "-j", "1")
    paths = [m["model"]["path"] for m in json.loads(out)["models"]]
    assert code == 1 and paths == [str(SAMPLES / "lenet_xavier.onnx"), str(SAMPLES / "lenet_std1.onnx")]
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{SAMPLES / 'lenet_xavier.onnx'}\n"))
    code, out, _ = run(capsys, SAMPLES / "lenet_dead_layer.onnx", "--models-from", "-", "-f", "json", "-j", "1")
    paths = [m["model"]["path"] for m in json.loads(out)["models"]]
    assert paths == [str(SAMPLES / "lenet_dead_layer.onnx"), str(SAMPLES / "lenet_xavier.onnx")]
    for bad, needle in ((tmp_path / "missing.txt", "--models-from file not found"), (tmp_path, "regular file")):
        code, out, err = run(capsys, "--models-from", bad)
        assert code == 2 and needle in err and err.count("\n") == 1
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    code, _, err = run(capsys, "--models-from", empty)
    assert code == 2 and "required: MODEL (or --models-from FILE)" in err


def test_an_error_naming_a_file_is_one_line_whatever_the_name(capsys, tmp_path):
    odd = tmp_path / "evil\n::error::x ##[warning]y.onnx"
    odd.write_bytes(b"not onnx")
    code, out, err = run(capsys, odd)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("initaudit: error: ") and "evil\\n::error::x ##\\[warning]y.onnx" in err

# --- issue 20: a closed pipe, quiet mode and --statistics on a terminal ---------------------------------------

def _closed_pipe_run(args: list[str]) -> subprocess.CompletedProcess:
    """The command with stdout a pipe whose reader is gone before it writes (`| true`, `| head` that quit)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "initaudit", *args], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("args, code", [(["rules"], 0), (["schema"], 0), (["fans", "5,5,3,6", "--layout", "HWIO"], 0),
                                        ([str(SAMPLES / "lenet_torch_default.onnx")], 1),
                                        ([str(SAMPLES / "lenet_xavier.onnx"), "--statistics"], 0)])
def test_a_closed_pipe_ends_the_output_quietly(args, code):
    done = _closed_pipe_run(args)
    assert done.stderr == ""           # no "internal error: BrokenPipeError", no "Exception ignored"
    assert done.returncode == code     # the verdict still, for an audit


def _on_a_terminal(args: list[str]) -> tuple[int, str]:
    """The command with stdout a pseudo-terminal (colour on by default), what it wrote there."""
    main_fd, child_fd = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    child = subprocess.Popen([sys.executable, "-m", "initaudit", *args], stdout=child_fd,
                             stderr=subprocess.DEVNULL, env=env)
    os.close(child_fd)
    seen = read_terminal(main_fd)
    return child.wait(timeout=120), seen.decode().replace("\r\n", "\n")


def test_quiet_on_a_terminal_keeps_flagged_rows_findings_and_summary(tmp_path):
    from signoffkit import layer_name, signoff_model

    path = signoff_model(tmp_path, 60)
    code, text = _on_a_terminal([str(path), "--profile", "trained", "-q"])
    assert code == 1
    rows = [line for line in text.splitlines() if line.startswith("backbone/")]
    assert len(rows) == 18 and all("\033[33mwarn\033[0m" in r or "\033[31;1mfail\033[0m" in r for r in rows)
    assert rows[0].split()[0] == layer_name(3) and "\033[32mok" not in text
    assert text.splitlines()[-1] == f"{path}: 60 weights — 42 ok, 12 warn, 6 fail (target xavier, convention " \
                                    "connectivity, profile trained)"
    code, full = _on_a_terminal([str(path), "--profile", "trained"])
    assert code == 1 and sum(line.startswith("backbone/") for line in full.splitlines()) == 60
    assert full.splitlines()[0] == text.splitlines()[-1]  # 60 rows: the summary first as well


def test_statistics_on_a_terminal_and_the_report_still_written(tmp_path):
    out = tmp_path / "report.json"
    code, text = _on_a_terminal([str(SAMPLES / "lenet_torch_default.onnx"), "--statistics", "-o", str(out),
                                 "--format", "json"])
    assert code == 1
    assert [line.split(None, 3) for line in text.splitlines()] == [
        ["4", "IA101", "variance-far-from-target", "4 fail"], ["1", "IA102", "variance-off-target", "1 warn"],
        ["1", "IA104", "signal-drift", "1 warn"]]
    assert json.loads(out.read_text())["summary"] == {"layers": 5, "ok": 0, "warn": 1, "fail": 4, "skipped": 0}
