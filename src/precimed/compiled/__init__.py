"""Compiled scoring: a tabular bundle's preprocessing and models as array code on a fixed feature order.

``Scorer`` (built once when a bundle is loaded, as ``Bundle.scorer``) scores columns or records in microseconds
per patient; ``Declined`` tells the caller to use the reference path (pandas preprocessing, the estimators'
own ``predict_*``), which stays the definition of every output and every error message.
``precimed.compiled.onnx_graph`` writes the same computation as an ONNX graph.
"""

from precimed.compiled.preprocessing import CompiledPreprocessor, Declined
from precimed.compiled.scorer import Scorer

__all__ = ["CompiledPreprocessor", "Declined", "Scorer"]
