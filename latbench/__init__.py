"""latbench: few-shot latency prediction on unseen hardware -- data, tasks, baselines, leaderboard."""

__version__ = "0.1.0"

from latbench.paths import data_dir  # noqa: E402

__all__ = ["__version__", "data_dir"]
