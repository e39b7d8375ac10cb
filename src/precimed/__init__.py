"""precimed: deep learning for precision medicine, validated like clinical research.

The public API (see ``precimed.workflows.api`` for a worked example)::

    import precimed
    run = precimed.train("examples/pima.yaml", "runs/pima")     # or a RunConfig / dict
    model = precimed.load_bundle(run.bundle_path)
    model.schema, model.primary
    model.predict(patients_frame)          # one row per patient
    model.explain(patients_frame)          # SHAP in the user's units
    precimed.evaluate(run.bundle_path, "gbsg", "runs/pima-gbsg")
    precimed.plan("patient.json", bundle=run.bundle_path)
    precimed.deidentify("ehr.csv", "ehr_deid.csv", key_file="key.bin")

Names are loaded on first use, so ``import precimed`` stays fast and torch is imported only when a
model is trained or loaded.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

_API = ("load_bundle", "train", "evaluate", "predict", "explain", "plan", "deidentify", "RunConfig")
__all__ = [*_API, "__version__"]
# plan and deidentify need no torch: they come from their light recipes, not from the modelling API module
_HOME = {"plan": "precimed.workflows.planning", "deidentify": "precimed.workflows.privacy",
         "RunConfig": "precimed.config"}


def _api(name: str) -> Any:
    return getattr(importlib.import_module(_HOME.get(name, "precimed.workflows.api")), name)


def __getattr__(name: str) -> Any:
    if name in _API:
        value = _api(name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'precimed' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__


class _Package(types.ModuleType):
    """``precimed.train`` and ``precimed.evaluate`` name both a layer's subpackage and a public function.

    The import system records a subpackage as an attribute of its parent when it is first imported; these
    properties keep the public functions in those places (the subpackages stay importable by their dotted
    names, e.g. ``from precimed.train import catalogue``, which reads ``sys.modules``).
    """

    @property
    def train(self) -> Any:
        return _api("train")

    @train.setter
    def train(self, _module: Any) -> None:
        pass

    @property
    def evaluate(self) -> Any:
        return _api("evaluate")

    @evaluate.setter
    def evaluate(self, _module: Any) -> None:
        pass


sys.modules[__name__].__class__ = _Package
