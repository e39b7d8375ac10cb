"""Recall and precision of the note de-identifier on a hand-labelled note file, in either mode.

File format (UTF-8 text): notes separated by a line ``---``; lines starting with ``#`` before the first
note are comments; an optional first line ``@row key=value | key=value`` gives the row's structured
identifier columns (searched for in the note as a table row's would be); PHI is marked inline as
``[[TYPE|text]]`` with TYPE one of NAME DATE PHONE EMAIL ID ADDRESS AGE URL IP.

Scoring, per gold type and overall ("ALL"):

- ``recall``: the share of gold spans whose every character is redacted (by a span of any type): the
  share of identifiers that do not survive;
- ``typed_recall``: the share of gold spans overlapped by a predicted span of the same type;
- ``precision`` (per predicted type and overall): the share of predicted spans that overlap a gold span.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from precimed.errors import DataError
from precimed.limits import read_user_text
from precimed.privacy.note_corpus import score_table
from precimed.privacy.notes import PHI_TYPES, KnownIdentifiers, NotesMode, Span, detect_phi

_MARK = re.compile(r"\[\[([A-Z]+)\|(.+?)\]\]")


@dataclass(frozen=True)
class LabelledText:
    """One labelled note: its text, gold spans and the row's structured identifier values."""

    text: str
    spans: tuple[Span, ...]
    row: dict[str, str] = field(default_factory=dict)


def parse_labelled(source: str, *, where: str = "labelled notes") -> list[LabelledText]:
    """Parse the labelled-note format; errors name the note number, never its content."""
    notes = []
    blocks = re.split(r"^---[ \t]*$", source, flags=re.M)
    for number, block in enumerate(blocks[1:], start=1):
        lines = block.strip("\n").split("\n")
        row: dict[str, str] = {}
        if lines and lines[0].startswith("@row "):
            for item in lines.pop(0)[5:].split("|"):
                key, sep, value = item.partition("=")
                if not sep:
                    raise DataError(f"{where}: note {number}: @row items are key=value")
                row[key.strip()] = value.strip()
        notes.append(_unmark("\n".join(lines), row, where, number))
    return notes


def _unmark(marked: str, row: dict[str, str], where: str, number: int) -> LabelledText:
    parts: list[str] = []
    spans: list[Span] = []
    pos = length = 0
    for m in _MARK.finditer(marked):
        if m.group(1) not in PHI_TYPES:
            raise DataError(f"{where}: note {number}: unknown PHI type {m.group(1)!r}; expected one of {PHI_TYPES}")
        plain = marked[pos:m.start()]
        parts.append(plain)
        length += len(plain)
        spans.append(Span(length, length + len(m.group(2)), m.group(1)))
        parts.append(m.group(2))
        length += len(m.group(2))
        pos = m.end()
    parts.append(marked[pos:])
    return LabelledText("".join(parts), tuple(spans), row)


def load_labelled(path: str | Path) -> list[LabelledText]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: labelled note file not found")
    return parse_labelled(read_user_text(p), where=str(p))


def evaluate_labelled(notes: Sequence[LabelledText], mode: NotesMode = "strict", *,
                      use_row: bool = True) -> dict[str, dict[str, float]]:
    """Recall (redacted in full), typed recall and precision per type and overall."""
    gold_stats: dict[str, list[int]] = {}  # type -> [gold, covered, typed]
    pred_stats: dict[str, list[int]] = {}  # type -> [predicted, true]
    for note in notes:
        known = KnownIdentifiers.from_values(note.row.values()) if use_row and note.row else None
        pred = detect_phi(note.text, known=known, mode=mode)
        for g in note.spans:
            for key in (g.kind, "ALL"):
                s = gold_stats.setdefault(key, [0, 0, 0])
                s[0] += 1
                s[1] += _covered(g, pred)
                s[2] += any(p.kind == g.kind and _overlap(p, g) for p in pred)
        for p in pred:
            for key in (p.kind, "ALL"):
                s = pred_stats.setdefault(key, [0, 0])
                s[0] += 1
                s[1] += any(_overlap(p, g) for g in note.spans)
    out: dict[str, dict[str, float]] = {}
    for kind in (*PHI_TYPES, "ALL"):
        g = gold_stats.get(kind, [0, 0, 0])
        p = pred_stats.get(kind, [0, 0])
        if not g[0] and not p[0]:
            continue
        out[kind] = {"gold": g[0], "redacted": g[1], "recall": g[1] / g[0] if g[0] else float("nan"),
                     "typed_recall": g[2] / g[0] if g[0] else float("nan"), "predicted": p[0],
                     "precision": p[1] / p[0] if p[0] else float("nan")}
    return out


def missed(notes: Sequence[LabelledText], mode: NotesMode = "strict") -> list[tuple[int, str, str]]:
    """(note number, type, text) of every gold span not redacted in full: for tuning on a dev set."""
    out = []
    for number, note in enumerate(notes, start=1):
        known = KnownIdentifiers.from_values(note.row.values()) if note.row else None
        pred = detect_phi(note.text, known=known, mode=mode)
        out += [(number, g.kind, note.text[g.start:g.end]) for g in note.spans if not _covered(g, pred)]
    return out


def false_positives(notes: Sequence[LabelledText], mode: NotesMode = "strict") -> list[tuple[int, str, str]]:
    """(note number, type, text) of every predicted span that overlaps no gold span."""
    out = []
    for number, note in enumerate(notes, start=1):
        known = KnownIdentifiers.from_values(note.row.values()) if note.row else None
        for p in detect_phi(note.text, known=known, mode=mode):
            if not any(_overlap(p, g) for g in note.spans):
                out.append((number, p.kind, note.text[p.start:p.end]))
    return out


def format_results(results: dict[str, dict[str, float]]) -> str:
    """A plain-text table of :func:`evaluate_labelled` results."""
    return score_table(results, [("gold", "gold", 5, "d"), ("recall", "recall", 7, ".3f"),
                                 ("typed_recall", "typed", 6, ".3f"), ("predicted", "pred", 5, "d"),
                                 ("precision", "precision", 9, ".3f")])


def _overlap(a: Span, b: Span) -> bool:
    return a.start < b.end and b.start < a.end


def _covered(g: Span, pred: Sequence[Span]) -> bool:
    need = g.start
    for p in sorted(pred):
        if p.end <= need:
            continue
        if p.start > need:
            break
        need = p.end
        if need >= g.end:
            return True
    return need >= g.end
