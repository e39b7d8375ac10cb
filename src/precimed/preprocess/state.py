"""The saved state of a fitted preprocessor: one format number and one check of a state's header on load.

Every preprocessor (tabular, sequence, image) saves ``{"format", "estimator", "params", ...}`` as JSON in the bundle.
A state read back must have exactly the expected keys, this format and the loading class's name: anything else is an
ArtifactError naming what was found, before any value is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from precimed.errors import ArtifactError

STATE_FORMAT = 1


def check_state(state: Any, cls: type, expected: set[str], kind: str) -> None:
    """Refuse a state that is not ``kind`` (e.g. "a preprocessor") saved by ``cls`` in :data:`STATE_FORMAT`."""
    if not isinstance(state, Mapping) or set(state) != expected:
        keys = sorted(state) if isinstance(state, Mapping) else type(state).__name__
        raise ArtifactError(f"{cls.__name__}.from_state: not {kind} state (keys {keys}; expected {sorted(expected)})")
    if state["format"] != STATE_FORMAT or state["estimator"] != cls.__name__:
        raise ArtifactError(f"{cls.__name__}.from_state: state is {state['estimator']} format {state['format']}, "
                            f"this version reads {cls.__name__} format {STATE_FORMAT}; refit, or use a matching "
                            "precimed")
