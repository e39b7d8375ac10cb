"""``precimed drift`` for rows already in memory: the drift document of a current frame (e.g. the encoded feature
vectors the service stored, read back by ``precimed.service.cli_commands.served_window``) against the bundle's
reference, written as drift.json and drift.html into a new folder in one rename, like :func:`drift_report` does for
a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from precimed.bundle import Bundle
from precimed.workflows._run import Echo, check_out_dir, quiet
from precimed.workflows.drift import drift_frames, parse_window, reference_frame, write_drift

__all__ = ["drift_report_frame"]


def drift_report_frame(bundle: Bundle, current: pd.DataFrame, out_dir: Path | str, *, current_name: str,
                       reference: str = "train", encoded: bool = False, time_column: str | None = None,
                       window: str | None = None, model: str | None = None, n_boot: int = 200,
                       source: dict[str, Any] | None = None, subtitle: str = "", overwrite: bool = False,
                       echo: Echo = quiet) -> dict[str, Any]:
    """Compare ``current`` (the bundle's features, or with ``encoded`` its encoded columns) with the reference
    (``"train"`` or a table file; encoded the same way), per window of ``time_column``; write drift.json (with
    ``current.source`` = ``source`` when given) and drift.html into ``out_dir``; return the document."""
    out_dir = check_out_dir(out_dir, overwrite)
    parse_window(window)
    ref_frame, ref_name = reference_frame(bundle, reference, encoded=encoded, echo=echo)
    doc = drift_frames(bundle, ref_frame, current, time_column=time_column, window=window, model=model,
                       encoded=encoded, n_boot=n_boot, reference_name=ref_name, current_name=current_name, echo=echo)
    if source is not None:
        doc["current"]["source"] = source
    return write_drift(doc, out_dir, overwrite=overwrite, title=f"Drift: {current_name} vs {ref_name}",
                       subtitle=f"{doc['task']} model {doc['model']} of {bundle.ref}"
                       + (f" ({subtitle})" if subtitle else ""), echo=echo)
