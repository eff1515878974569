"""A synthetic stand-in for the HELP source, so the tests run without ``LATBENCH_MIRROR``.

:func:`build_synthetic` runs the real ``latbench data build`` (:func:`latbench.data.build.build`:
lock, write, atomic swap, the committed measured devices, every task as a config) with only the
HELP source replaced by a deterministic fake:

- the same spaces and arch counts as HELP (nb201 15,625, fbnet 5,000, ofa 5,000), every arch a
  valid canonical string; HELP's 10 hardware-embedding reference archs sit at HELP's ids (the ids
  every committed task's query pool reserves for them), and the committed measured archs sit at
  the ids they have in the real data (``latbench profile`` measures the reference archs, then a
  seeded permutation of the rest: :func:`latbench.measure.profiler.plan_archs`), so the measured
  devices, the measured tasks' arch-string pools and the id pools of the other tasks all line up
  as they do on real data. The other archs are in a fixed order that is *not* HELP's (NB201: the
  remaining cells in lexicographic order; FBNet/OFA: a seeded sample of the space);
- every HELP device of the pinned manifest (``latbench/data/manifests/help.json``), plus any
  device a task file names that no source provides, with synthetic latencies: per device, a
  positive mix of a compute term (FLOPs), a memory term (activations), a per-op overhead term and
  a constant, times seeded log-normal noise. The mix is drawn per device (seeded by the space and
  device name), so devices rank archs differently but plausibly (pairwise Spearman from ~0.05 to
  0.99, median 0.76-0.89 per space);
- the source is named ``help`` (tasks and methods that need HELP work), with no provenance files:
  ``latbench.json`` carries a ``"synthetic"`` entry instead, and its content hash is not the real one.

Numbers only true of the real HELP data (published results, specific correlations, file hashes,
the committed leaderboard) do not hold here; those tests are marked ``real_data`` (conftest).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from latbench.data.tables import SourceTables, SpaceTables

#: Bumped when the generated data changes (recorded in latbench.json).
GENERATOR_VERSION = 1
ARCH_COUNTS = {"nb201": 15625, "fbnet": 5000, "ofa": 5000}
#: HELP's ``hardware_embedding_index.pt`` (sorted): the ids every committed task's query pool reserves.
REFERENCE_IDS = {
    "nb201": (9, 55, 431, 1462, 6196, 8636, 9881, 11982, 13479, 14451),
    "fbnet": (457, 890, 1640, 2100, 2514, 2538, 3052, 3313, 3328, 3790),
    "ofa": (1316, 1587, 1621, 1636, 1980, 2329, 2487, 3355, 3740, 4948),
}
HELP_SPACE_DIRS = {"nb201": "data/nasbench201", "fbnet": "data/fbnet", "ofa": "data/ofa"}


def _rng(*key) -> np.random.Generator:
    """A generator seeded by a stable hash of ``key`` (independent of order and PYTHONHASHSEED)."""
    digest = hashlib.sha256(json.dumps([GENERATOR_VERSION, *key]).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


# ---- arch lists ---------------------------------------------------------------------------------
def _measured_placement(space: str, n: int, measured) -> dict[int, str]:
    """id -> arch string of every committed measured arch, at its id in the real data."""
    refs = np.asarray(REFERENCE_IDS[space])
    rest = np.setdiff1d(np.arange(n), refs)
    placed: dict[int, str] = {}
    for d in measured.devices.get(space, []) if measured else []:
        if d.meta.seed is None:
            continue  # imported data (no profiler sample plan): its archs must be among the others
        order = np.random.default_rng(d.meta.seed).permutation(rest)
        plan = refs.tolist() + order.tolist()  # = profiler.plan_archs on a space with these refs
        if len(d.archs) > len(plan):
            raise ValueError(f"{d.folder}: {len(d.archs)} measured archs, more than the {n} of the synthetic {space}")
        for i, a in zip(plan, d.archs):
            if placed.setdefault(i, a) != a:
                raise ValueError(f"{d.folder}: measured arch {a!r} would take id {i}, already {placed[i]!r}")
    return placed


def _random_arch(space: str, rng: np.random.Generator) -> str:
    if space == "fbnet":
        from latbench.spaces.fbnet import NUM_LAYERS, OPS

        return "-".join(OPS[i] for i in rng.integers(0, len(OPS), NUM_LAYERS))
    from latbench.spaces import ofa

    d = rng.choice(ofa.DEPTHS, ofa.NUM_STAGES)
    ks = rng.choice(ofa.KERNELS, ofa.NUM_SLOTS)
    e = rng.choice(ofa.EXPANDS, ofa.NUM_SLOTS)
    return ofa.OFASpace.canonical(ofa._format(int(rng.choice(ofa.RESOLUTIONS)), d, ks, e))


def synthetic_archs(space: str, measured=None) -> list[str]:
    """The space's arch strings by id (see the module docstring)."""
    from latbench.spaces import space_class

    n = ARCH_COUNTS[space]
    placed = _measured_placement(space, n, measured)
    taken = set(placed.values())
    if space == "nb201":
        pool = iter(a for a in space_class("nb201").all_archs() if a not in taken)
    else:
        rng = _rng("archs", space)

        def fresh():
            while True:
                a = _random_arch(space, rng)
                if a not in taken:
                    taken.add(a)
                    yield a

        pool = fresh()
    archs = [placed[i] if i in placed else next(pool) for i in range(n)]
    cls = space_class(space)
    archs = [cls.canonical(a) for a in archs]
    assert len(set(archs)) == n, f"{space}: duplicate synthetic archs"
    return archs


# ---- latencies ----------------------------------------------------------------------------------
def _devices(space: str, tasks, provided: set[str]) -> list[str]:
    """HELP's devices of ``space`` (the pinned manifest), plus task devices no source provides."""
    from latbench.data.sources import get_source

    prefix = f"{HELP_SPACE_DIRS[space]}/latency/"
    devices = {
        f["path"][len(prefix) : -3]
        for f in get_source("help").manifest["files"]
        if f["path"].startswith(prefix) and f["path"].endswith(".pt")
    }
    for t in tasks:
        if t.space == space:
            devices |= {d for d in (*t.source, *t.valid, *t.target) if d not in provided}
    return sorted(devices)


def _block_sums(layers) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """(FLOPs, activations) per searchable block of a layer list, and of its fixed part (block -1)."""
    sums: dict[int, np.ndarray] = {}
    for layer in layers:
        sums.setdefault(layer.block, np.zeros(2))
        sums[layer.block] += (layer.flops, layer.activations)
    return sums, sums.pop(-1, np.zeros(2))


def _flops_activations(space_obj) -> np.ndarray:
    """[n, 2]: the FLOPs and activations of every arch (the space's own counts, unscaled).

    NB201 counts are cheap already. FBNet and OFA counts are sums of per-block terms that depend
    only on the block's position and choice (and OFA's resolution), so they are read off the layer
    lists of a few uniform archs: ~1000x faster than a layer list per arch, and exact.
    """
    ids = space_obj.arch_ids()
    if space_obj.name == "nb201":
        return np.stack([space_obj.flops(ids), space_obj.activations(ids)], axis=1) * 1e6
    strings = [space_obj.arch_str(i) for i in ids]
    if space_obj.name == "fbnet":
        from latbench.spaces.fbnet import NUM_LAYERS, OP_INDEX, OPS

        cost = np.zeros((NUM_LAYERS, len(OPS), 2))
        for o, op in enumerate(OPS):
            blocks, fixed = _block_sums(space_obj._layers("-".join([op] * NUM_LAYERS)))
            for b, v in blocks.items():
                cost[b, o] = v
        choice = np.array([[OP_INDEX[t] for t in a.split("-")] for a in strings])
        return fixed + cost[np.arange(NUM_LAYERS), choice].sum(1)
    from latbench.spaces import ofa

    cost = np.zeros((len(ofa.RESOLUTIONS), ofa.NUM_SLOTS, len(ofa.KERNELS), len(ofa.EXPANDS), 2))
    fixed = np.zeros((len(ofa.RESOLUTIONS), 2))
    for ri, r in enumerate(ofa.RESOLUTIONS):
        for ki, k in enumerate(ofa.KERNELS):
            for ei, x in enumerate(ofa.EXPANDS):
                d = [ofa.SLOTS_PER_STAGE] * ofa.NUM_STAGES
                blocks, fixed[ri] = _block_sums(space_obj._layers(ofa._format(r, d, [k] * ofa.NUM_SLOTS, [x] * ofa.NUM_SLOTS)))
                for b, v in blocks.items():
                    cost[ri, b, ki, ei] = v
    out = np.zeros((len(strings), 2))
    for i, a in enumerate(strings):
        r, _, ks, e = ofa.parse(a)
        ri = ofa.RESOLUTIONS.index(r)
        out[i] = fixed[ri] + sum(
            cost[ri, s, ofa.KERNELS.index(k), ofa.EXPANDS.index(x)] for s, (k, x) in enumerate(zip(ks, e)) if k
        )
    return out


def _features(space_obj, onehot: np.ndarray) -> np.ndarray:
    """Per arch: [FLOPs, activations, count of ops that run], each scaled to mean 1."""
    ops = onehot.sum(1)
    if space_obj.name == "nb201":  # 'none' runs nothing
        ops = ops - onehot.reshape(len(ops), 6, 5)[:, :, 0].sum(1)
    elif space_obj.name == "fbnet":  # 'skip' runs nothing
        ops = ops - onehot.reshape(len(ops), 22, 9)[:, :, 8].sum(1)
    f = np.concatenate([_flops_activations(space_obj), (ops + 1.0)[:, None]], axis=1)
    return f / f.mean(0)


def synthetic_latency(space: str, device: str, features: np.ndarray, onehot: np.ndarray) -> np.ndarray:
    """ms per arch on ``device``: a positive, device-specific mix of the features, with noise."""
    rng = _rng("latency", space, device)
    mix = rng.dirichlet([1.0, 0.6, 0.6, 0.3])  # compute, memory, overhead, constant
    per_op = rng.gamma(4.0, 0.25, onehot.shape[1])  # device-specific cost of each (position, op) choice
    op_term = onehot @ per_op
    op_term = op_term / op_term.mean()
    core = mix[0] * features[:, 0] + mix[1] * features[:, 1] + mix[2] * 0.5 * (features[:, 2] + op_term) + mix[3]
    scale = float(np.exp(rng.normal(1.0, 1.2)))  # ms of an average arch
    noise = np.exp(rng.normal(0.0, rng.uniform(0.02, 0.12), len(core)))
    return scale * core * noise


def synthetic_source(tasks, measured) -> SourceTables:
    """The fake HELP source: :class:`~latbench.data.tables.SourceTables` named ``help``."""
    from latbench.spaces import space_class

    spaces = {}
    for space in ARCH_COUNTS:
        archs = synthetic_archs(space, measured)
        provided = {d.meta.device for d in (measured.devices.get(space, []) if measured else [])}
        obj = space_class(space)(archs)
        onehot = obj.onehot(obj.arch_ids()).astype(np.float64)
        features = _features(obj, onehot)
        latency = {d: synthetic_latency(space, d, features, onehot) for d in _devices(space, tasks, provided)}
        spaces[space] = SpaceTables(archs=archs, latency=latency, reference_ids=list(REFERENCE_IDS[space]))
    return SourceTables(name="help", spaces=spaces, files=[])


class _SyntheticHelp:
    """Stands in for :data:`latbench.data.sources.SOURCES` ``["help"]`` during :func:`build_synthetic`."""

    name = "help"

    def __init__(self, tasks):
        self.tasks = tasks

    def read(self, files) -> SourceTables:
        from latbench.data import measured as measured_source

        return synthetic_source(self.tasks, measured_source.read_all())


def build_synthetic(out: Path, tasks=None, log=lambda msg: None) -> dict:
    """Build the synthetic dataset at ``out``; returns its latbench.json info.

    This is the real ``latbench data build`` (:func:`latbench.data.build.build`: lock, write,
    atomic swap) with only the HELP source replaced: its files are not fetched and its adapter
    returns :func:`synthetic_source`. ``latbench.json`` gets a ``"synthetic"`` entry.
    ``tasks``: the task specs to write as configs (default: every committed task). The measured
    devices are the ones ``latbench data build`` reads (``latbench.data.measured.read_all``).
    """
    from unittest import mock

    from latbench.data import build as build_mod
    from latbench.data import measured as measured_source

    if tasks is None:
        from latbench.tasks.spec import list_tasks

        tasks = list_tasks()
    real_write, real_read_all, read_once = build_mod._write, measured_source.read_all, {}

    def fetch(source, **options):
        assert isinstance(source, _SyntheticHelp), source
        return {}

    def write(*args, **kwargs):
        info = real_write(*args, **kwargs)
        info["synthetic"] = {
            "generator": "tests/synthetic.py",
            "version": GENERATOR_VERSION,
            "note": "synthetic latencies standing in for HELP's (tests without LATBENCH_MIRROR); not real measurements",
        }
        return info

    def read_all(folders=None):  # read the measured folders once: the synthetic source needs them too
        if folders is not None:
            return real_read_all(folders)
        if "all" not in read_once:
            read_once["all"] = real_read_all()
        return read_once["all"]

    with (
        mock.patch.object(build_mod, "get_source", lambda name: _SyntheticHelp(tasks)),
        mock.patch.object(build_mod, "fetch", fetch),
        mock.patch.object(build_mod, "_write", write),
        mock.patch.object(measured_source, "read_all", read_all),
    ):
        info = build_mod.build(Path(out), sources=("help", measured_source.SOURCE_NAME), tasks=tasks, log=log)
    log(f"(synthetic: {out})")
    return info


if __name__ == "__main__":  # python tests/synthetic.py OUT: build one and print the device correlations
    import sys

    from scipy.stats import spearmanr

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "synthetic-dataset").resolve()
    os.environ.setdefault("LATBENCH_HOME", str(target.parent))
    info = build_synthetic(target, log=print)
    print({space: (c["archs"], len(c["devices"])) for space, c in info["spaces"].items()}, info["build_seconds"], "s")
    for sp, st in synthetic_source([], None).spaces.items():
        rho = spearmanr(np.stack(list(st.latency.values())), axis=1)[0]
        off = rho[np.triu_indices_from(rho, 1)]
        print(sp, f"pairwise Spearman: min {off.min():.2f} median {np.median(off):.2f} max {off.max():.2f}")
