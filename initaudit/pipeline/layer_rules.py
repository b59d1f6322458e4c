"""Per-layer policy from config: ``[[tool.initaudit.layers]]`` rules matched by glob.

Each rule names layers by a glob (or a list of globs) and optionally the consuming
op, and sets any of ``target`` (a scheme, ``std:VALUE`` or ``auto``), ``gain``,
``profile`` or ``ignore = "reason"``; ``codes = ["IA102"]`` narrows that ignore to those
rule codes (or prefixes), so one check is switched off on one layer and the others stay.  A layer is named by its tensor name, each
consuming node's name, and the PyTorch module path the dynamo exporter records on
the node (``pkg.torch.onnx.name_scopes``): exporters rename transposed weights
(``onnx::MatMul_123``, ``val_86``) but keep a module path in one of those.
Rules apply in order, a later one overriding the fields it sets.
"""
from __future__ import annotations

import ast
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from onnx import NodeProto

from initaudit.codes import RULES
from initaudit.errors import InitauditError
from initaudit.judge.bands import PROFILES
from initaudit.judge.schemes import normalize_target

RULE_KEYS = ("match", "op", "target", "gain", "profile", "ignore", "codes")


@dataclass(frozen=True)
class LayerRule:
    match: tuple[str, ...]
    op: str | None = None
    target: str | None = None
    gain: float | None = None
    profile: str | None = None
    ignore: str | None = None
    index: int = 1                   # 1-based position in the config, for messages
    codes: tuple[str, ...] = ()      # with ignore: only these rule codes (or prefixes) are ignored

    @property
    def label(self) -> str:
        globs = ", ".join(repr(g) for g in self.match)
        return f"layers rule {self.index} (match {globs}{f', op {self.op!r}' if self.op else ''})"

    def applies(self, names: Iterable[str], op: str) -> bool:
        if self.op is not None and self.op != op:
            return False
        return any(fnmatchcase(name, glob) for name in names for glob in self.match)


@dataclass(frozen=True)
class RuleChoice:
    """What the rules decide for one layer (None: not set by any rule)."""

    target: str | None = None
    gain: float | None = None
    profile: str | None = None
    ignore: str | None = None
    reason: str | None = None        # which rule set the target, for ``target_reason``
    rules: tuple[int, ...] = ()      # indices of the rules that matched
    ignore_codes: tuple[tuple[str, str], ...] = ()  # (code or prefix, the IA502 message) of narrowed ignores


def _fail(where: str, index: int, message: str) -> InitauditError:
    return InitauditError(f"{where}: [[tool.initaudit.layers]] rule {index}: {message}")


def parse_rule(raw: Any, index: int, where: str = "config") -> LayerRule:
    """One rule table, validated (one-line errors naming the rule)."""
    if isinstance(raw, LayerRule):
        return raw
    if not isinstance(raw, dict):
        raise _fail(where, index, f"expected a table, got {type(raw).__name__}")
    table = {str(k).replace("-", "_"): v for k, v in raw.items()}
    unknown = sorted(set(table) - set(RULE_KEYS))
    if unknown:
        raise _fail(where, index, f"unknown key(s) {', '.join(unknown)}; known: {', '.join(RULE_KEYS)}")
    match = table.get("match")
    globs = [match] if isinstance(match, str) else match
    if not isinstance(globs, list) or not globs or not all(isinstance(g, str) and g for g in globs):
        raise _fail(where, index, "`match` must be a glob or a list of globs on layer names, e.g. \"*.c_proj.weight\"")
    op = table.get("op")
    if op is not None and (not isinstance(op, str) or not op):
        raise _fail(where, index, "`op` must be an op type such as \"MatMul\"")
    target = table.get("target")
    if target is not None:
        try:
            target = normalize_target(target) if isinstance(target, str) else None
        except ValueError as exc:
            raise _fail(where, index, str(exc)) from None
        if target is None:
            raise _fail(where, index, "`target` must be a string such as \"xavier\" or \"std:0.02\"")
    gain = table.get("gain")
    if gain is not None and (isinstance(gain, bool) or not isinstance(gain, (int, float))
                             or not (math.isfinite(gain) and gain > 0)):
        raise _fail(where, index, f"`gain` must be a positive number, got {gain!r}")
    profile = table.get("profile")
    if profile is not None and profile not in PROFILES:
        raise _fail(where, index, f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    ignore = table.get("ignore")
    if ignore is not None and (not isinstance(ignore, str) or not ignore.strip()):
        raise _fail(where, index, "`ignore` takes the reason the reports show, e.g. ignore = \"tied to wte\"")
    codes = _rule_codes(table.get("codes"), ignore, where, index)
    return LayerRule(tuple(globs), op, target, float(gain) if gain is not None else None, profile,
                     ignore.strip() if ignore is not None else None, index, codes)


def _rule_codes(raw: Any, ignore: Any, where: str, index: int) -> tuple[str, ...]:
    """``codes``: rule codes or prefixes that narrow a rule's ``ignore`` to those checks."""
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items or not all(isinstance(c, str) and c.strip() for c in items):
        raise _fail(where, index, "`codes` must be a rule code or a list of them, e.g. codes = [\"IA102\"]")
    codes = tuple(c.strip().upper() for c in items)
    unknown = [c for c in codes if not any(known.startswith(c) for known in RULES)]
    if unknown:
        raise _fail(where, index, f"unknown rule code(s) {', '.join(unknown)} in `codes`; `initaudit rules` lists them")
    if "IA502" in codes:
        raise _fail(where, index, "`codes` cannot hold IA502: it is the note that says what a rule ignored")
    if ignore is None:
        raise _fail(where, index, "`codes` narrows `ignore`: give the reason too, e.g. ignore = \"scaled on purpose\"")
    return codes


def parse_rules(raw: Any, where: str = "config") -> tuple[LayerRule, ...]:
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, (list, tuple)):
        raise InitauditError(f"{where}: `layers` must be an array of tables ([[tool.initaudit.layers]])")
    return tuple(parse_rule(item, i, where) for i, item in enumerate(raw, start=1))


def choose(rules: Sequence[LayerRule], names: Iterable[str], op: str) -> RuleChoice:
    """The fields the matching rules set, a later rule winning."""
    names = list(names)
    found: dict[str, Any] = {}
    narrowed: dict[str, str] = {}
    matched = []
    for rule in rules:
        if not rule.applies(names, op):
            continue
        matched.append(rule.index)
        for key in ("target", "gain", "profile"):
            if getattr(rule, key) is not None:
                found[key] = getattr(rule, key)
                if key in ("target", "gain"):
                    found["reason"] = f"set by {rule.label}"
        if rule.ignore is not None and rule.codes:
            narrowed.update({code: f"{code} ignored by {rule.label}: {rule.ignore}" for code in rule.codes})
        elif rule.ignore is not None:
            found["ignore"] = f"ignored by {rule.label}: {rule.ignore}"
    return RuleChoice(found.get("target"), found.get("gain"), found.get("profile"), found.get("ignore"),
                      found.get("reason"), tuple(matched), tuple(narrowed.items()))


def module_path(node: NodeProto) -> str | None:
    """The innermost PyTorch module the dynamo exporter recorded for a node (``layers.0.mlp.down_proj``)."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            # the last scope is the aten call (linear_6); the one before it is the module
            if isinstance(scopes, list) and len(scopes) >= 2 and isinstance(scopes[-2], str) and scopes[-2]:
                return scopes[-2]
    return None


def dead_rules(rules: Sequence[LayerRule], matched: Iterable[int]) -> list[LayerRule]:
    used = set(matched)
    return [rule for rule in rules if rule.index not in used]
