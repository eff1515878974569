"""nn-Meter's per-kernel-type random forests: hyperparameters and features, as data.

Shared by the kernel-level baselines and by kernel sampling (``latbench profile-kernels``), which
judges its sampled configurations with the same forests nn-Meter uses.
"""

from __future__ import annotations

#: nn-Meter ``predictor_lib.__PREDICTOR_ZOO__``: family -> (max_depth, n_estimators, max_features)
#: per backend.
HYPERPARAMS = {
    "tflite_cpu": {
        "conv-bn-relu": (70, 320, 6),
        "dwconv-bn-relu": (50, 240, 6),
        "fc": (50, 370, 2),
        "channelshuffle": (50, 370, 2),
        "se": (20, 290, 2),
        "maxpool": (50, 210, 5),
        "global-avgpool": (70, 370, 2),
        "hswish": (50, 190, 2),
        "avgpool": (50, 370, 5),
        "bnrelu": (50, 370, 2),
        "relu": (50, 370, 2),
        "bn": (50, 370, 2),
        "concat": (100, 690, 5),
        "addrelu": (50, 570, 3),
        "add": (50, 570, 3),
        "split": (50, 190, 2),
    },
    "tflite_gpu": {
        "conv-bn-relu": (80, 550, 5),
        "dwconv-bn-relu": (40, 240, 7),
        "fc": (70, 330, 4),
        "se": (50, 190, 2),
        "maxpool": (50, 370, 5),
        "hswish": (50, 190, 2),
        "avgpool": (50, 370, 5),
        "bnrelu": (50, 190, 2),
        "relu": (50, 190, 2),
        "bn": (50, 190, 2),
        "concat": (100, 690, 5),
        "addrelu": (50, 570, 3),
        "add": (50, 570, 3),
    },
    "openvino_vpu": {
        "conv-bn-relu": (100, 500, 5),
        "dwconv-bn-relu": (100, 650, 5),
        "fc": (70, 330, 4),
        "channelshuffle": (50, 370, 2),
        "se": (50, 110, 2),
        "maxpool": (50, 370, 5),
        "hswish": (50, 110, 2),
        "avgpool": (50, 390, 5),
        "bnrelu": (50, 570, 2),
        "relu": (50, 190, 2),
        "bn": (50, 390, 2),
        "addrelu": (50, 570, 3),
        "add": (50, 570, 3),
    },
}
FALLBACK = (50, 370, 1.0)

#: Features per forest (nn-Meter extract_feature), as kernel-table columns.
_CONV = ("hw", "cin", "cout", "ks", "stride", "flops", "params")
FAMILY_FEATURES = {
    "conv-bn-relu": _CONV,
    "dwconv-bn-relu": _CONV,
    "fc": ("cin", "cout", "flops", "params"),
    "avgpool": ("hw", "cin", "cout", "ks", "stride"),
    "maxpool": ("hw", "cin", "cout", "ks", "stride"),
    "add": ("hw", "cin", "cin"),
    "addrelu": ("hw", "cin", "cin"),
}
DEFAULT_FEATURES = ("hw", "cin")


def family_features(family: str) -> tuple[str, ...]:
    return FAMILY_FEATURES.get(family, DEFAULT_FEATURES)


def kernel_forest(
    family: str, n_features: int, *, hardware: str = "tflite_cpu", max_trees: int | None = None, random_state: int = 10
):
    """An unfitted ``RandomForestRegressor`` for one kernel family, with nn-Meter's hyperparameters."""
    from sklearn.ensemble import RandomForestRegressor  # local: scikit-learn's ensemble import is slow

    depth, trees, mf = HYPERPARAMS[hardware].get(family, FALLBACK)
    if max_trees:
        trees = min(trees, max_trees)
    if isinstance(mf, int):
        mf = min(mf, n_features)
    return RandomForestRegressor(
        max_depth=depth,
        n_estimators=trees,
        max_features=mf,
        min_samples_leaf=1,
        min_samples_split=2,
        bootstrap=False,
        random_state=random_state,
    )
