"""The training loop and estimators under the scikit-learn contract."""
