"""[[tool.initaudit.layers]] end to end: globs, precedence, ops, ignore in every format, dead globs, errors."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from onnx import StringStringEntryProto, helper

from initaudit.cli.main import main
from initaudit.errors import InitauditError
from initaudit.pipeline.layer_rules import LayerRule, RuleChoice, choose, module_path, parse_rule, parse_rules
from tests.modelkit import model, save, tensor
from tests.test_transformers import FIXTURES, missed_tensors

REASON = "tied to the token embedding (see #42)"


def gpt2ish(tmp_path, wrong: str | None = None):
    """Eight MatMul layers named like GPT-2's, N(0, 0.02) and c_proj at 0.02/√8; ``wrong`` drawn at std 1."""
    rng = np.random.default_rng(7)
    weights = {}
    for b in range(2):
        for part, shape, std in (("attn.c_attn", (64, 192), 0.02), ("attn.c_proj", (64, 64), 0.02 / math.sqrt(8)),
                                 ("mlp.c_fc", (64, 256), 0.02), ("mlp.c_proj", (256, 64), 0.02 / math.sqrt(8))):
            name = f"h.{b}.{part}.weight"
            weights[name] = rng.normal(0, 1.0 if name == wrong else std, shape).astype(np.float32)
    nodes = []
    for i, name in enumerate(weights):
        nodes.append(helper.make_node("MatMul", ["x", name], [f"y{i}"], name=f"/{name.rsplit('.', 1)[0]}/MatMul"))
    return save(model(nodes, [tensor(n, w) for n, w in weights.items()], outputs=[f"y{i}" for i in range(len(weights))]),
                tmp_path)


def config(tmp_path, text: str):
    path = tmp_path / "rules.toml"
    path.write_text("[tool.initaudit]\n" + text)
    return str(path)


def run_json(capsys, *args) -> tuple[int, dict, str]:
    code = main([*map(str, args), "--format", "json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


GPT2_RULES = '''target = "std:0.02"
[[tool.initaudit.layers]]
match = "*.c_proj.weight"
target = "std:0.00707"
'''


def test_later_rules_win_and_uncovered_layers_take_the_cli_target(tmp_path, capsys):
    path = gpt2ish(tmp_path)
    code, out, _ = run_json(capsys, path, "--config", config(tmp_path, GPT2_RULES))
    targets = {layer["name"]: layer["target"] for layer in out["layers"]}
    assert code == 0 and out["summary"]["fail"] == 0
    assert targets["h.0.attn.c_proj.weight"] == "std:0.00707" and targets["h.1.mlp.c_fc.weight"] == "std:0.02"
    reason = next(layer["target_reason"] for layer in out["layers"] if layer["name"] == "h.0.attn.c_proj.weight")
    assert reason == "set by layers rule 1 (match '*.c_proj.weight')"

    # the same two rules in the other order: the catch-all comes last and wins everywhere
    reversed_rules = '''[[tool.initaudit.layers]]
match = "*.c_proj.weight"
target = "std:0.00707"
[[tool.initaudit.layers]]
match = "h.*"
target = "std:0.02"
'''
    code, out, _ = run_json(capsys, path, "--config", config(tmp_path, reversed_rules))
    assert {layer["target"] for layer in out["layers"]} == {"std:0.02"}
    failing = {layer["name"] for layer in out["layers"] if layer["status"] == "fail"}
    assert code == 1 and failing == {f"h.{b}.{p}.c_proj.weight" for b in range(2) for p in ("attn", "mlp")}

    # the CLI --target replaces the top-level target, not the rule's
    code, out, _ = run_json(capsys, path, "--config", config(tmp_path, GPT2_RULES), "--target", "xavier")
    targets = {layer["name"]: layer["target"] for layer in out["layers"]}
    assert targets["h.0.attn.c_proj.weight"] == "std:0.00707" and targets["h.0.attn.c_attn.weight"] == "xavier"


def test_op_gain_and_profile(tmp_path, capsys):
    path = gpt2ish(tmp_path)
    rules = GPT2_RULES + '''[[tool.initaudit.layers]]
match = "*c_fc*"
op = "Gemm"
target = "xavier"
[[tool.initaudit.layers]]
match = "h.0.mlp.c_fc.weight"
target = "std:0.01"
gain = 2.0
[[tool.initaudit.layers]]
match = "h.1.mlp.c_fc.weight"
target = "std:0.0125"
profile = "trained"
'''
    code, out, _ = run_json(capsys, path, "--config", config(tmp_path, rules))
    by_name = {layer["name"]: layer for layer in out["layers"]}
    assert by_name["h.0.attn.c_attn.weight"]["target"] == "std:0.02"      # op = "Gemm" never matched a MatMul
    fc0 = by_name["h.0.mlp.c_fc.weight"]
    assert fc0["target_var"] == pytest.approx((2 * 0.01) ** 2) and fc0["status"] == "ok"
    fc1 = by_name["h.1.mlp.c_fc.weight"]                                # 2.56× its target: fails under init …
    assert fc1["ratio"] == pytest.approx(2.56, rel=0.05) and fc1["status"] == "ok"  # … within trained's 1/3–3
    assert code == 0
    assert "layers rule 2" in " ".join(out["warnings"])                  # the Gemm-only rule matched nothing


@pytest.mark.parametrize("fmt", ["table", "json", "markdown", "html", "sarif", "junit"])
def test_an_ignored_layer_is_listed_with_its_reason_in_every_format(tmp_path, capsys, fmt):
    path = gpt2ish(tmp_path, wrong="h.1.mlp.c_fc.weight")
    rules = GPT2_RULES + f'''[[tool.initaudit.layers]]
match = "h.1.mlp.c_fc.*"
ignore = "{REASON}"
'''
    code = main([str(path), "--config", config(tmp_path, rules), "--format", fmt])
    text = capsys.readouterr().out
    assert code == 0
    assert "h.1.mlp.c_fc.weight" in text and REASON in text
    if fmt == "json":
        out = json.loads(text)
        layer = next(layer for layer in out["layers"] if layer["name"] == "h.1.mlp.c_fc.weight")
        assert layer["status"] == "ok" and layer["target"] is None and layer["ratio"] is None
        assert layer["ignored"].endswith(REASON) and layer["findings"][0]["code"] == "IA502"
        assert layer["std"] == pytest.approx(1.0, rel=0.05)                  # still measured
        assert "h.1.mlp.c_fc.weight" not in out["policy"]["layers"]


def test_without_the_ignore_rule_the_wrong_layer_fails(tmp_path, capsys):
    path = gpt2ish(tmp_path, wrong="h.1.mlp.c_fc.weight")
    code, out, _ = run_json(capsys, path, "--config", config(tmp_path, GPT2_RULES))
    failing = [layer for layer in out["layers"] if layer["status"] == "fail"]
    assert code == 1 and [layer["name"] for layer in failing] == ["h.1.mlp.c_fc.weight"]
    # one cause, one finding: the policy breach, saying the target's verdict too (its ratio 1²/0.02² = 2500)
    [found] = failing[0]["findings"]
    assert found["code"] == "IA501" and found["severity"] == "fail"
    assert found["message"].startswith("std 1, which matches no scheme; the other 7 layers match")
    assert re.search(r"; also variance 2\.5\de\+03× the std:0\.02 target, above the fail band .* \(IA101\)$",
                     found["message"])


def test_ignoring_the_policy_breach_keeps_the_target_verdict(tmp_path, capsys):
    path = gpt2ish(tmp_path, wrong="h.1.mlp.c_fc.weight")
    code, out, _ = run_json(capsys, path, "--config", config(tmp_path, GPT2_RULES), "--ignore", "IA501")
    layer = next(layer for layer in out["layers"] if layer["name"] == "h.1.mlp.c_fc.weight")
    assert code == 1 and [f["code"] for f in layer["findings"]] == ["IA101"]
    assert "(IA101)" not in layer["findings"][0]["message"] and "policy" not in layer["findings"][0]["message"]


def test_a_dead_glob_is_a_warning_not_a_failure(tmp_path, capsys):
    path = gpt2ish(tmp_path)
    rules = GPT2_RULES + '''[[tool.initaudit.layers]]
match = ["*.c_proj.wieght", "*lm_head*"]
ignore = "typo"
'''
    code, out, err = run_json(capsys, path, "--config", config(tmp_path, rules))
    assert code == 0
    assert err.strip() == ("initaudit: warning: layers rule 2 (match '*.c_proj.wieght', '*lm_head*') "
                           "matched no layer in any audited model")
    assert out["warnings"] == [err.strip().removeprefix("initaudit: warning: ")]
    assert [f["code"] for f in out["findings"]][-1] == "IA503"
    code = main([str(path), "--config", config(tmp_path, rules)])
    captured = capsys.readouterr()
    assert "IA503" in captured.out and "matched no layer" in captured.err


def test_a_glob_used_by_one_of_several_models_is_not_dead(tmp_path, capsys):
    first = gpt2ish(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    second = save(model([helper.make_node("MatMul", ["x", "w"], ["y"], name="/fc/MatMul")],
                        [tensor("w", np.random.default_rng(0).normal(0, 0.02, (64, 64)).astype(np.float32))]), other)
    code, out, err = run_json(capsys, first, second, "--config", config(tmp_path, GPT2_RULES), "-j", "1")
    assert err == "" and "warnings" not in out


@pytest.mark.parametrize("body,expected", [
    ('[[tool.initaudit.layers]]\nmatch = "*"\ntraget = "std:0.02"\n', "unknown key(s) traget"),
    ('[[tool.initaudit.layers]]\ntarget = "std:0.02"\n', "`match` must be a glob"),
    ('[[tool.initaudit.layers]]\nmatch = "*"\ntarget = "std:-1"\n', "positive standard deviation"),
    ('[[tool.initaudit.layers]]\nmatch = "*"\ntarget = "glorot"\n', "unknown target 'glorot'"),
    ('[[tool.initaudit.layers]]\nmatch = "*"\ngain = -2\n', "`gain` must be a positive number"),
    ('[[tool.initaudit.layers]]\nmatch = "*"\nprofile = "fresh"\n', "unknown profile 'fresh'"),
    ('[[tool.initaudit.layers]]\nmatch = "*"\nignore = true\n', "`ignore` takes the reason"),
    ('layers = 3\n', "`layers` must be an array of tables"),
    ('[[tool.initaudit.layers]]\nmatch = "*"\ncodes = ["IA102"]\n', "`codes` narrows `ignore`: give the reason"),
    ('[[tool.initaudit.layers]]\nmatch = "*"\ncodes = ["IA999"]\nignore = "x"\n', "unknown rule code(s) IA999"),
    ('[[tool.initaudit.layers]]\nmatch = "*"\ncodes = []\nignore = "x"\n', "`codes` must be a rule code"),
    ('[[tool.initaudit.layers]]\nmatch = "*"\ncodes = ["IA502"]\nignore = "x"\n', "`codes` cannot hold IA502"),
])
def test_bad_rules_are_one_line_errors(tmp_path, capsys, body, expected):
    path = gpt2ish(tmp_path)
    assert main([str(path), "--config", config(tmp_path, body)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err and err.startswith("initaudit: error: ")


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_globs_reach_renamed_weights_through_node_and_module_names(tmp_path, capsys, exporter):
    """``val_86`` / ``onnx::MatMul_545`` are found by ``*down_proj*`` (dynamo module path / legacy node name)."""
    path = FIXTURES / f"llama_missed.{exporter}.onnx"
    rules = '''target = "std:0.02"
[[tool.initaudit.layers]]
match = "*down_proj*"
ignore = "RowParallelLinear keeps torch's default (tracked elsewhere)"
'''
    code, out, err = run_json(capsys, path, "--config", config(tmp_path, rules))
    ignored = {layer["name"] for layer in out["layers"] if layer["ignored"]}
    assert code == 0 and err == ""
    assert ignored == missed_tensors("llama_missed", exporter)


def test_a_layer_whose_target_a_rule_sets_is_held_to_it_not_to_the_majority(tmp_path, capsys):
    path = gpt2ish(tmp_path, wrong="h.1.mlp.c_fc.weight")
    rules = GPT2_RULES + '''[[tool.initaudit.layers]]
match = "h.1.mlp.c_fc.weight"
target = "std:1"
'''
    code, out, _ = run_json(capsys, path, "--config", config(tmp_path, rules))
    layer = next(layer for layer in out["layers"] if layer["name"] == "h.1.mlp.c_fc.weight")
    assert code == 0 and layer["status"] == "ok" and layer["findings"] == []
    assert "std:1" in layer["matches"] and "h.1.mlp.c_fc.weight" not in out["policy"]["layers"]


def test_codes_narrow_an_ignore_to_one_check_on_one_layer(tmp_path, capsys):
    """The wrong layer fails on IA101 and IA501 (test_without_the_ignore_rule_the_wrong_layer_fails); a rule
    that ignores IA501 only keeps its IA101, its target and its ratio, and notes what it ignored."""
    path = gpt2ish(tmp_path, wrong="h.1.mlp.c_fc.weight")
    rules = GPT2_RULES + f'''[[tool.initaudit.layers]]
match = "h.1.mlp.c_fc.*"
codes = ["IA501"]
ignore = "{REASON}"
'''
    code, out, _ = run_json(capsys, path, "--config", config(tmp_path, rules))
    layer = next(layer for layer in out["layers"] if layer["name"] == "h.1.mlp.c_fc.weight")
    assert code == 1 and layer["status"] == "fail" and layer["target"] == "std:0.02"
    assert layer["ratio"] == pytest.approx(1 / 0.02 ** 2, rel=0.05)       # still judged: std 1 against 0.02
    assert [f["code"] for f in layer["findings"]] == ["IA101", "IA502"]
    assert layer["findings"][1]["message"] == (f"IA501 ignored by layers rule 2 (match 'h.1.mlp.c_fc.*'): {REASON}")
    others = [la for la in out["layers"] if la["name"] != "h.1.mlp.c_fc.weight"]
    assert all(la["status"] == "ok" and not la["findings"] for la in others)  # the rule matched one layer


def test_codes_take_prefixes_and_leave_a_note_only_where_they_dropped_a_finding(tmp_path, capsys):
    path = gpt2ish(tmp_path, wrong="h.1.mlp.c_fc.weight")
    rules = GPT2_RULES + '''[[tool.initaudit.layers]]
match = "h.1.mlp.*"
codes = ["IA1", "IA5", "IA2"]
ignore = "scaled on purpose"
'''
    code, out, _ = run_json(capsys, path, "--config", config(tmp_path, rules))
    by_name = {layer["name"]: layer for layer in out["layers"]}
    wrong = by_name["h.1.mlp.c_fc.weight"]
    assert code == 0 and wrong["status"] == "ok" and wrong["target"] == "std:0.02" and wrong["ratio"] > 100
    assert [f["message"].split(" ", 1)[0] for f in wrong["findings"]] == ["IA1", "IA5"]
    assert {f["code"] for f in wrong["findings"]} == {"IA502"}
    assert wrong.get("suggestion") is None                                   # nothing left to fix
    assert by_name["h.1.mlp.c_proj.weight"]["findings"] == []               # matched, nothing dropped: no note


# --- parse_rule / choose / module_path as functions (from mutation testing) ---------------------------------------

HEAD = "pyproject.toml: [[tool.initaudit.layers]] rule 3: "


@pytest.mark.parametrize("raw,message", [
    (["*"], "expected a table, got list"),
    ({"match": "*", "tar-get": 1, "zz": 2}, "unknown key(s) tar_get, zz; known: match, op, target, gain, profile, ignore, codes"),
    ({"match": []}, '`match` must be a glob or a list of globs on layer names, e.g. "*.c_proj.weight"'),
    ({"match": 5}, '`match` must be a glob or a list of globs on layer names, e.g. "*.c_proj.weight"'),
    ({"match": ["*", ""]}, '`match` must be a glob or a list of globs on layer names, e.g. "*.c_proj.weight"'),
    ({"match": "*", "op": 5}, '`op` must be an op type such as "MatMul"'),
    ({"match": "*", "op": ""}, '`op` must be an op type such as "MatMul"'),
    ({"match": "*", "target": 5}, '`target` must be a string such as "xavier" or "std:0.02"'),
    ({"match": "*", "target": "glorot"}, "unknown target 'glorot'; choose one of xavier, he, lecun, auto or std:VALUE"),
    ({"match": "*", "gain": "2"}, "`gain` must be a positive number, got '2'"),
    ({"match": "*", "gain": True}, "`gain` must be a positive number, got True"),
    ({"match": "*", "gain": 0}, "`gain` must be a positive number, got 0"),
    ({"match": "*", "gain": math.inf}, "`gain` must be a positive number, got inf"),
    ({"match": "*", "profile": "fresh"}, "unknown profile 'fresh'; choose one of init, trained"),
    ({"match": "*", "ignore": "  "}, '`ignore` takes the reason the reports show, e.g. ignore = "tied to wte"'),
])
def test_each_bad_rule_has_its_exact_message(raw, message):
    with pytest.raises(InitauditError) as caught:
        parse_rule(raw, 3, "pyproject.toml")
    assert str(caught.value) == HEAD + message


def test_rules_are_numbered_from_one_and_named_by_where_they_come_from():
    with pytest.raises(InitauditError) as caught:
        parse_rules([{"match": "*"}, {"match": "*", "op": 5}], "x.toml")
    assert str(caught.value) == 'x.toml: [[tool.initaudit.layers]] rule 2: `op` must be an op type such as "MatMul"'
    with pytest.raises(InitauditError) as caught:
        parse_rules([{"match": 1}])
    assert str(caught.value).startswith("config: [[tool.initaudit.layers]] rule 1: `match`")
    with pytest.raises(InitauditError) as caught:
        parse_rule("x", 1)
    assert str(caught.value) == "config: [[tool.initaudit.layers]] rule 1: expected a table, got str"


def test_a_single_table_is_one_rule_and_values_are_normalized():
    [rule] = parse_rules({"match": "*.c_proj.weight", "target": "std:2e-2", "gain": 0.5, "ignore": " tied "})
    assert rule == LayerRule(("*.c_proj.weight",), None, "std:0.02", 0.5, None, "tied", 1)
    assert parse_rule({"match": ["a*", "b*"], "op": "Gemm", "gain": 3}, 2).gain == 3.0


def test_an_op_rule_applies_to_its_op_only_and_a_gain_names_its_rule():
    gain = LayerRule(("*",), op="MatMul", gain=2.0, index=1)
    assert choose([gain], ["w"], "MatMul") == RuleChoice(None, 2.0, None, None, "set by layers rule 1 (match '*', op 'MatMul')", (1,))
    assert choose([gain], ["w"], "Gemm") == RuleChoice()
    later = LayerRule(("w",), target="lecun", profile="trained", index=2)
    assert choose([gain, later], ["x", "w"], "MatMul") == RuleChoice(
        "lecun", 2.0, "trained", None, "set by layers rule 2 (match 'w')", (1, 2))


@pytest.mark.parametrize("value,expected", [
    ("['', 'layers.0.mlp.down_proj', 'linear_6']", "layers.0.mlp.down_proj"),
    ("['model.fc', 'addmm']", "model.fc"),
    ("['linear']", None),          # only the aten call
    ("'ab'", None),                # not a list
    ("[5, 'linear']", None),       # the module is not a name
    ("['', 'linear']", None),
    ("not python", None),
])
def test_module_path_is_the_scope_before_the_aten_call(value, expected):
    node = helper.make_node("MatMul", ["x", "w"], ["y"])
    node.metadata_props.append(StringStringEntryProto(key="pkg.torch.onnx.name_scopes", value=value))
    assert module_path(node) == expected
