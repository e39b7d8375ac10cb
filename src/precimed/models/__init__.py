"""Networks, losses and non-deep baselines."""
