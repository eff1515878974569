"""nn-Meter: per-kernel random forests, summed over the kernels a runtime executes after fusion.

nn-Meter (Zhang et al., MobiSys 2021; code ``microsoft/nn-Meter``) predicts each kernel's latency
with a random forest per kernel type, with nn-Meter's features and per-kernel hyperparameters.
``variant="faithful"`` fits the forests on the target's measured kernel latencies (devices
profiled by latbench; no transfer). ``variant="adapted"`` (default), for HELP's end-to-end-only
devices, backfits the forests per source device from end-to-end latencies and rescales the best
source's forests per kernel type on the k shots; nn-Meter has no such few-shot step.
See the documentation page baselines/nn-meter (``docs/baselines/nn-meter.md``).
"""

from __future__ import annotations

import numpy as np

from latbench.errors import MethodError
from latbench.kernels import decomposition as kernels
from latbench.kernels.regressors import HYPERPARAMS, kernel_forest
from latbench.methods.base import Method
from latbench.methods.fitting import best_scale_source, positive_floor
from latbench_baselines.kernel_bank import (
    MEASURED_RULES,
    KernelBank,
    backfitted_banks,
    check_variant,
    family_scales,
    kernel_sum,
    measured_bank,
    select_shrink,
)


class NNMeter(Method):
    """nn-Meter's per-kernel random forests, faithful (measured kernels) or adapted (backfitted).

    Parameters
    ----------
    variant : {"adapted", "faithful"}, default "adapted"
        "faithful": forests fitted on the target's measured kernel latencies (the per-layer kernel
        rows of the k measured archs, plus ``campaign``), no source devices; needs a task with
        kernel tables. "adapted": forests backfitted per source device from end-to-end latencies,
        rescaled per kernel type on the k shots.
    rules : str, default "default"
        Fusion rule set of the adapted variant (``latbench.kernels``; "default" is ``tflite-cpu``,
        nn-Meter's rule file for TFLite on a mobile CPU). The faithful variant always uses
        ``torch-eager``.
    hardware : {"tflite_cpu", "tflite_gpu", "openvino_vpu"}, default "tflite_cpu"
        Which of nn-Meter's per-kernel forest hyperparameters (``predictor_lib.py``) to use.
    rounds : int, default 2
        Backfitting rounds (adapted variant). latbench's choice; nn-Meter measures kernels instead.
    inner : int, default 100
        Rescaling steps per backfitting round (adapted variant); latbench's choice.
    shrink : float or tuple of float, default 1e-4
        Ridge prior pulling the per-kernel-type scales towards the source's overall scale (adapted
        variant); a tuple is a grid searched by leave-one-out on the shots. latbench's choice,
        tuned on medium-3 and hard-1.
    random_state : int, default 10
        Seed of the forests. nn-Meter's value.
    max_trees : int or None, default None
        Cap on the trees per forest (quick checks); None keeps nn-Meter's numbers.
    campaign : str or None, default None
        Faithful variant only: a ``latbench profile-kernels`` output folder whose single-kernel
        measurements of the target device are added to the forests' training data (with k = 0,
        nn-Meter proper).

    Attributes
    ----------
    banks_ : list of KernelBank
        Adapted variant: the backfitted forests of each source device (shared across trials).
    targets_ : dict of str to object
        Per target device: ``(source index, per-family scales)`` (adapted), or the target's own
        ``KernelBank`` (faithful).
    """

    name = "nn-meter"
    summary = "nn-Meter adapted: per-kernel RFs backfitted from e2e latency per source, rescaled per kernel type on the shots"

    def __init__(
        self,
        variant: str = "adapted",
        rules: str = "default",
        hardware: str = "tflite_cpu",
        rounds: int = 2,
        inner: int = 100,
        shrink=1e-4,
        random_state: int = 10,
        max_trees: int | None = None,
        campaign: str | None = None,
    ):
        self.variant = variant
        self.campaign = campaign
        self.rules = rules
        self.hardware = hardware
        self.rounds = rounds
        self.inner = inner
        self.shrink = shrink
        self.random_state = random_state
        self.max_trees = max_trees

    #: the contract suite only checks the protocol: few trees, one round
    check_params = {"max_trees": 8, "rounds": 1}

    def _forest(self, family: str, n_features: int):
        return kernel_forest(family, n_features, hardware=self.hardware, max_trees=self.max_trees, random_state=self.random_state)

    def fit(self, source, space, seed):
        super().fit(source, space, seed)
        if self.hardware not in HYPERPARAMS:
            raise MethodError(f"nn-meter: hardware must be one of {', '.join(HYPERPARAMS)}, got {self.hardware!r}")
        check_variant(self)
        self.targets_ = {}
        if self.variant == "faithful":  # nn-Meter has no transfer: each target gets its own kernel predictors
            self.rules_, self.banks_ = MEASURED_RULES, []
            return self
        self.rules_ = kernels.resolve_rules(self.rules)
        self.banks_ = backfitted_banks(
            self,
            source,
            space,
            lambda: KernelBank(self.rules_, self._forest, self.rounds, self.inner),
            self.hardware,
            self.max_trees,
        )
        return self

    def _family_sums(self, ids, d: int):
        return self.banks_[d].family_sums(self.space_, kernels.count_matrix(self.space_, ids, self.rules_))

    def adapt(self, device, oracle):
        super().adapt(device, oracle)
        ids, y = self.shots_[device]
        if self.variant == "faithful":
            self.targets_[device] = measured_bank(
                self.space_, oracle, ids, lambda: KernelBank(MEASURED_RULES, self._forest, 0), campaign=self.campaign
            )
            return self
        if len(ids) == 0:
            self.targets_[device] = (0, {})  # zero-shot: the first source device as is
            return self
        sums = [self._family_sums(ids, d) for d in range(len(self.banks_))]
        P = np.column_stack([q.sum(axis=1) for q, _ in sums])
        d, a = best_scale_source(P, y)
        Q, fams = sums[d]
        s = family_scales(Q, y, a, select_shrink(Q, y, a, self.shrink))
        if not np.any(s > 0):
            s = np.full(len(fams), a)
        self.targets_[device] = (d, dict(zip(fams, s)))
        return self

    def predict(self, device, arch_ids):
        if self.variant == "faithful":
            return positive_floor(kernel_sum(self.space_, self.targets_[device], arch_ids), self.shots_[device][1])
        d, scales = self.targets_[device]
        Q, fams = self._family_sums(arch_ids, d)
        default = float(np.mean(list(scales.values()))) if scales else 1.0
        s = np.array([scales.get(f, default) for f in fams])
        return positive_floor(Q @ s, self.shots_[device][1])
