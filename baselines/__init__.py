"""latbench's built-in latency predictors, one class per file.

Installed as ``latbench_baselines`` and registered through the ``latbench.methods`` entry-point
group in ``pyproject.toml``, exactly as a third-party predictor package registers its methods.
"""
