"""Cleaning with a data-quality report, imputation, scaling and encoding of tabular features.

Transformers follow scikit-learn (fit on training rows only, learned state ends in ``_``); the
fitted ``TabularPreprocessor`` is saved as JSON state (``to_state`` / ``from_state``).
"""

from precimed.preprocess.encoders import GenotypeEncoder, RangeGuard
from precimed.preprocess.quality import format_quality, quality_report
from precimed.preprocess.tabular import TabularPreprocessor

__all__ = ["GenotypeEncoder", "RangeGuard", "TabularPreprocessor", "format_quality", "quality_report"]
