"""Conflicts between recommendations: which proposal wins, which is overridden, and which contradiction is left
for the clinician.

Every source of advice (a fired rule, a CPIC recommendation, a drug interaction, an allergy, a drug-condition
contraindication, a renal dose rule) becomes a :class:`Proposal` about one drug or class. :func:`resolve` keeps
the strongest and records, for every pair that contradicts, who won and why, so the plan can show it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from precimed.planning.drugs import drug_vocabulary
from precimed.planning.rulebook import STRENGTHS, Action

#: How an action kind ranks in a conflict: a contraindication / avoid outranks a dose change, which outranks a
#: preference. ``monitor`` never conflicts; ``none`` ("use as labelled") is informational.
ACTION_RANK: dict[str, int] = {"avoid": 3, "adjust_dose": 2, "prefer_alternative": 1, "none": 0, "monitor": -1}


@dataclass(frozen=True)
class Proposal:
    """An action proposed by a rule, a PGx recommendation, an interaction, an allergy or a contraindication."""

    origin: str  # rule | pgx | interaction | allergy | contraindication | renal
    id: str
    action: Action | None
    text: str
    strength: str = "moderate"
    priority: int = 0
    source: str = ""
    targets: frozenset[str] = frozenset()  # drugs the action is about (a class expanded to its members)

    @property
    def rank(self) -> int:
        return ACTION_RANK.get(self.action.type, 0) if self.action else 0

    def label(self) -> str:
        act = f"{self.action.type} {self.action.drug}" if self.action else "information"
        return f"{self.origin} {self.id} ({act})"


@dataclass(frozen=True)
class Decision:
    proposal: Proposal
    status: str  # active | overridden | unresolved
    overridden_by: str | None = None
    reason: str | None = None
    restricted_to: tuple[str, ...] | None = None


def _outranks(a: Proposal, b: Proposal) -> tuple[bool, str] | None:
    """Does `a` win over `b`? None when they do not conflict or cannot be ordered."""
    if a.rank != b.rank:
        high, low = (a, b) if a.rank > b.rank else (b, a)
        why = {3: "an avoid / contraindication outranks", 2: "a dose adjustment outranks"}.get(high.rank, "outranks")
        kind = {2: "a dose adjustment", 1: "a preference", 0: "a use-as-labelled statement"}.get(low.rank, "it")
        return (high is a), f"{why} {kind}, whatever their priorities"
    if a.priority != b.priority:
        return a.priority > b.priority, f"same action kind; priority {max(a.priority, b.priority)} beats " \
                                        f"{min(a.priority, b.priority)}"
    sa, sb = STRENGTHS.get(a.strength, 0), STRENGTHS.get(b.strength, 0)
    if sa != sb:
        return sa > sb, f"same action kind and priority; a {a.strength if sa > sb else b.strength} recommendation " \
                        f"beats a {b.strength if sa > sb else a.strength} one"
    return None


def _conflicting(a: Proposal, b: Proposal) -> frozenset[str]:
    """The drugs on which two proposals contradict each other (empty when they are compatible).

    Contradictions: avoiding a drug that another proposal prefers, doses or uses as labelled; two preferences
    that each replace the other's drug; a dose change against "use as labelled". Two dose adjustments accumulate,
    and a preference is compatible with a dose adjustment of the same drug.
    """
    if a.action is None or b.action is None:
        return frozenset()
    kinds = {a.action.type, b.action.type}
    if "monitor" in kinds or kinds in ({"avoid"}, {"adjust_dose"}, {"none"}, {"adjust_dose", "prefer_alternative"},
                                       {"none", "prefer_alternative"}):
        return frozenset()
    if kinds == {"prefer_alternative"}:
        return (a.targets & _instead(b)) | (b.targets & _instead(a))
    return a.targets & b.targets


def _instead(p: Proposal) -> frozenset[str]:
    if p.action is None or p.action.instead_of is None:
        return frozenset()
    return frozenset(drug_vocabulary().expand(p.action.instead_of))


def resolve(proposals: Sequence[Proposal]) -> tuple[list[Decision], list[dict[str, Any]]]:
    """Resolve conflicts between proposals.

    Proposals are taken strongest first (action kind: avoid/contraindication > adjust_dose > prefer_alternative >
    use-as-labelled; then priority; then strength) and each is kept unless it contradicts one already kept that
    outranks it, so a preference overridden by a contraindication cannot in turn override anything. ``monitor``
    never conflicts, nor do two dose adjustments of one drug (all are shown; the most restrictive applies). A
    preference that conflicts on only some of its drugs stays for the others (``restricted_to``). Equal-rank
    contradictions are kept as ``unresolved`` on both sides and reported for the clinician to decide.
    """
    def key(i: int) -> tuple:
        p = proposals[i]
        return (-p.rank, -p.priority, -STRENGTHS.get(p.strength, 0), i)

    decisions: dict[int, Decision] = {}
    conflicts: list[dict[str, Any]] = []
    kept: list[int] = []
    for i in sorted(range(len(proposals)), key=key):
        p = proposals[i]
        blockers: list[tuple[int, str, frozenset[str]]] = []
        ties: list[int] = []
        for j in kept:
            shared = _conflicting(p, proposals[j])
            if not shared:
                continue
            order = _outranks(proposals[j], p)
            if order is None or not order[0]:
                ties.append(j)
                conflicts.append({"drugs": sorted(shared), "between": [proposals[j].label(), p.label()],
                                  "winner": None, "reason": "same action kind, priority and strength: unresolved, "
                                                            "both shown; the clinician decides"})
            else:
                blockers.append((j, order[1], shared))
                conflicts.append({"drugs": sorted(shared), "winner": proposals[j].label(), "loser": p.label(),
                                  "reason": order[1]})
        if blockers:
            lost = frozenset().union(*(s for _, _, s in blockers))
            remaining = p.targets - lost
            winner, why = proposals[blockers[0][0]].label(), blockers[0][1]
            if remaining and p.action is not None and p.action.type == "prefer_alternative":
                decisions[i] = Decision(p, "active", winner, f"restricted: {why}", tuple(sorted(remaining)))
                kept.append(i)
            else:
                decisions[i] = Decision(p, "overridden", winner, why)
            continue
        kept.append(i)
        if ties:
            others = ", ".join(proposals[j].label() for j in ties)
            decisions[i] = Decision(p, "unresolved", None, f"conflicts with {others} at equal rank")
            for j in ties:
                decisions[j] = Decision(proposals[j], "unresolved", None, f"conflicts with {p.label()} at equal rank")
        else:
            decisions[i] = Decision(p, "active")
    return [decisions[i] for i in range(len(proposals))], conflicts
