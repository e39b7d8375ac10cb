"""The span of text the note de-identifier marks, the identifier types and the two modes: shared by the
detector (``notes``) and its allowlist mode (``note_allowlist``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PHI_TYPES = ("NAME", "DATE", "PHONE", "EMAIL", "ID", "ADDRESS", "AGE", "URL", "IP", "OTHER")
NotesMode = Literal["strict", "allowlist"]
NOTES_MODES: tuple[str, ...] = ("strict", "allowlist")


@dataclass(frozen=True, order=True)
class Span:
    """A PHI span: characters ``text[start:end]`` of type `kind`."""

    start: int
    end: int
    kind: str
