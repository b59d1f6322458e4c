"""The options of an audit, validated once."""
from __future__ import annotations

from dataclasses import dataclass

from .bands import PROFILES, Profile
from .errors import InitauditError
from .fans import CONVENTIONS, Convention
from .rules import RULES
from .schemes import TARGETS

FAIL_ON = ("warn", "fail", "never")


@dataclass(frozen=True)
class AuditOptions:
    target: str = "xavier"                 # xavier | he | lecun | auto
    convention: Convention = "connectivity"
    profile: Profile = "init"
    pool_aware: bool = False
    fail_on: str = "fail"
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    fp16: bool = False
    drift_limit: float = 100.0             # IA104 when the activation variance drifts beyond this factor
    histograms: bool = False               # a histogram of each flagged layer's values (for --format html)

    def __post_init__(self) -> None:
        for value, allowed, what in (
            (self.target, TARGETS, "target"), (self.convention, CONVENTIONS, "convention"),
            (self.profile, PROFILES, "profile"), (self.fail_on, FAIL_ON, "fail-on"),
        ):
            if value not in allowed:
                raise InitauditError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
        for code in (*self.select, *self.ignore):
            if not any(known.startswith(code) for known in RULES):
                raise InitauditError(f"unknown rule code {code!r}; `initaudit rules` lists them")
        if not self.drift_limit > 1:
            raise InitauditError(f"drift limit must be a factor above 1, got {self.drift_limit}")

    def keeps(self, code: str) -> bool:
        if self.select and not any(code.startswith(s) for s in self.select):
            return False
        return not any(code.startswith(i) for i in self.ignore)
