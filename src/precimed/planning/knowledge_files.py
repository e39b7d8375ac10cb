"""The one loader of the packaged knowledge files (``planning/knowledge/**.yaml``), and the YAML reader it shares
with rule files a site keeps outside the package.

Why one loader: the fact schema, rule sets, CPIC tables, dosing tables, drug vocabulary, interactions and
contraindications are all versioned, cited YAML; reading them in one place means one cache, one provenance check
(a knowledge file says where it comes from: ``source`` and ``version`` at its top, or in its ``ruleset:`` header)
and one error for a broken file (:class:`~precimed.errors.RuleError` naming the file, the line and the entry).

``load_knowledge`` parses a file once per process (``functools.cache``, an unbounded ``lru_cache``) and hands
every caller its own deep copy, so no caller can change what the next one reads. ``yaml`` is imported on first
use, so importing ``precimed.planning`` stays cheap.

(The module is not called ``knowledge.py`` because ``planning/knowledge/`` is the data folder beside it.)
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from precimed.errors import DataError, RuleError
from precimed.limits import read_user_text

#: The packaged knowledge folder.
KNOWLEDGE = Path(__file__).resolve().parent / "knowledge"
#: Where a knowledge file's provenance fields sit: at the top, or in a rule file's ``ruleset:`` header.
PROVENANCE_FIELDS = ("source", "version")


def load_knowledge(name: str) -> dict[str, Any]:
    """The packaged knowledge file `name` (relative to ``planning/knowledge/``, e.g. ``"cpic/TPMT.yaml"``).

    Parsed once and cached; each call returns a deep copy, so callers may keep or change what they get. Raises
    RuleError naming the file when it is missing, is not valid YAML, is not a mapping, or lacks its ``source`` /
    ``version``.
    """
    return copy.deepcopy(_parsed(KNOWLEDGE, _checked_name(name)))


def knowledge_names(folder: str = "") -> list[str]:
    """The packaged knowledge files in `folder` (e.g. ``"rules"``), as names for :func:`load_knowledge`."""
    root = KNOWLEDGE / folder if folder else KNOWLEDGE
    return sorted(p.relative_to(KNOWLEDGE).as_posix() for p in root.glob("*.y*ml"))


def read_yaml(path: Path | str) -> Any:
    """A YAML file by path: a packaged knowledge file goes through :func:`load_knowledge` (cached), any other file
    (a site's rules or ``schema.yaml``) is read now, since it may change while the process runs."""
    path = Path(path)
    name = packaged_name(path)
    if name is not None:
        return load_knowledge(name)
    try:
        text = read_user_text(path)
    except (OSError, DataError) as exc:
        raise RuleError(f"{path}: cannot read ({exc})") from None
    return parse_yaml(text, origin=str(path))


def packaged_name(path: Path | str) -> str | None:
    """The :func:`load_knowledge` name of `path` when it is a packaged knowledge file, else None."""
    try:
        rel = Path(path).resolve().relative_to(KNOWLEDGE)
    except (OSError, ValueError):
        return None
    return rel.as_posix() if (KNOWLEDGE / rel).is_file() else None


def parse_yaml(text: str, *, origin: str) -> Any:
    """Parse YAML text; a syntax error raises RuleError naming `origin`, the line and the entry (``id:``) around it."""
    import yaml  # imported on first use: most imports of precimed.planning never read a file

    # libyaml's safe loader parses the packaged tables several times faster than the pure-Python one (start-up)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        entry_id = _id_near(text, line)
        what = "rule" if re.search(r"^ruleset:", text, re.MULTILINE) else "entry"
        near = f" in {what} {entry_id!r}" if entry_id else ""
        at = f" line {line}" if line else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RuleError(f"{origin}{at}: YAML syntax error{near}: {problem}. Fix the file; no {what} was loaded "
                        "from it.") from None


@cache
def _parsed(root: Path, name: str) -> dict[str, Any]:
    """Read, parse and check one packaged file (the cache behind load_knowledge; `root` keys it so a test that
    points KNOWLEDGE elsewhere never sees a stale entry). Callers get copies, never this object."""
    path = root / name
    try:
        text = path.read_text()
    except OSError as exc:
        raise RuleError(f"{path}: cannot read the knowledge file ({exc})") from None
    data = parse_yaml(text, origin=str(path))
    if not isinstance(data, Mapping):
        raise RuleError(f"{path}: a knowledge file is a YAML mapping, got {type(data).__name__}")
    head = data["ruleset"] if isinstance(data.get("ruleset"), Mapping) else data
    missing = [f for f in PROVENANCE_FIELDS if not head.get(f)]
    if missing:
        where = "its ruleset header" if head is not data else "its top level"
        raise RuleError(f"{path}: a knowledge file names its provenance; {' and '.join(missing)} missing at {where}")
    return dict(data)


def _checked_name(name: str) -> str:
    """`name` as a relative path inside the knowledge folder; anything that could leave it is refused."""
    rel = Path(str(name))
    if rel.is_absolute() or ".." in rel.parts or rel.suffix not in (".yaml", ".yml"):
        raise RuleError(f"{name!r}: not a knowledge file name (a relative .yaml path inside planning/knowledge/)")
    return rel.as_posix()


def _id_near(text: str, line: int | None) -> str | None:
    """The id of the entry that contains (or precedes) `line`, read from the raw text."""
    if line is None:
        return None
    found = None
    for raw in text.splitlines()[:line]:
        m = re.match(r"\s*-?\s*id:\s*['\"]?([^'\"#\s]+)", raw)
        if m:
            found = m.group(1)
    return found
