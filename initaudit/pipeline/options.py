"""The options of an audit, validated once."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from initaudit.codes import RULES
from initaudit.errors import InitauditError
from initaudit.findings import Finding
from initaudit.judge.bands import PROFILES, Profile
from initaudit.judge.schemes import normalize_target
from initaudit.pipeline.layer_rules import LayerRule, parse_rules
from initaudit.trace.fans import CONVENTIONS, Convention

FAIL_ON = ("warn", "fail", "never")
#: ``auto`` is resolved per model to init or trained (``judge.profile.decide_profile``).
PROFILE_CHOICES: tuple[str, ...] = (*PROFILES, "auto")


@dataclass(frozen=True)
class AuditOptions:
    target: str = "xavier"                 # xavier | he | lecun | auto | std:VALUE
    convention: Convention = "connectivity"
    profile: Profile = "init"
    pool_aware: bool = False
    fail_on: str = "fail"
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    fp16: bool = False
    drift_limit: float = 100.0             # IA104 when the activation variance drifts beyond this factor
    layers: tuple[LayerRule, ...] = ()     # per-layer rules ([[tool.initaudit.layers]]), later ones win
    histograms: bool = False               # a histogram of each flagged layer's values (for --format html)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "target", normalize_target(self.target))
        except (ValueError, AttributeError, TypeError) as exc:
            raise InitauditError(str(exc) if isinstance(exc, ValueError) else
                                 f"target must be a string, got {self.target!r}") from None
        for value, allowed, what in (
            (self.convention, CONVENTIONS, "convention"),
            (self.profile, PROFILE_CHOICES, "profile"), (self.fail_on, FAIL_ON, "fail-on"),
        ):
            if value not in allowed:
                raise InitauditError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
        for code in (*self.select, *self.ignore):
            if not any(known.startswith(code) for known in RULES):
                raise InitauditError(f"unknown rule code {code!r}; `initaudit rules` lists them")
        object.__setattr__(self, "layers", parse_rules(list(self.layers), "layers"))
        if not self.drift_limit > 1:
            raise InitauditError(f"drift limit must be a factor above 1, got {self.drift_limit}")

    def selected(self, findings: Iterable[Finding]) -> tuple[Finding, ...]:
        """The findings ``--select`` / ``--ignore`` keep: the one place the code filter is applied
        (``pipeline.run.selected`` passes every finding of a judged model through it)."""
        return tuple(f for f in findings if self.keeps(f.code))

    def keeps(self, code: str) -> bool:
        """``--select`` / ``--ignore`` (codes or prefixes).  IA502 is kept whatever they say: it is
        the reason a layer the config ignores is held to nothing."""
        if code == "IA502":
            return True
        if self.select and not any(code.startswith(s) for s in self.select):
            return False
        return not any(code.startswith(i) for i in self.ignore)
