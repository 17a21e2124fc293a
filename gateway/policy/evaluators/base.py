"""What every evaluator is: incremental state that answers, after each token, with the cut points it
accepts now: ``BEFORE`` the token just fed (it is not sent), ``AFTER`` it, or 0 to go on."""

from __future__ import annotations

from gateway.policy.text import Step, TextTracker

BEFORE, AFTER = 1, 2


class Evaluator:
    """One rule's incremental state; ``step`` returns the cut points it wants now (0 = go on)."""

    name = ""

    def step(self, s: Step, tracker: TextTracker) -> int:
        raise NotImplementedError


def at_boundary(s: Step, flag: int) -> int:
    """The cuts that fall on a ``flag`` boundary; with no flag (``at: token``), both cuts."""
    if not flag:
        return BEFORE | AFTER
    return (BEFORE if s.before & flag else 0) | (AFTER if s.after & flag else 0)
