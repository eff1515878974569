"""Evaluation: units of work, the one runner behind ``evaluate`` and sweeps, checkpoints, results."""
