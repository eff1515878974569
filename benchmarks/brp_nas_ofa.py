"""Diagnose brp-nas on one task: how well pre-training fits, zero-shot vs fine-tuned ranking.

Why: without the input resolution, brp-nas scores ~0.2 Spearman on the OFA task easy-2 where
FLOPs give 0.98 (``benchmarks/results/brp-nas-ofa.md``). This script
splits the pipeline into its stages on one (task, trial, k) so the stage that loses the ranking
shows: the pooled pre-training target itself (median over source devices of the median-normalised
latency), the pre-trained GCN on the source devices and on the targets (zero-shot), and the
fine-tuned GCN. Prints one JSON object.

    python benchmarks/brp_nas_ofa.py --task easy-2 --shots 10
    python benchmarks/brp_nas_ofa.py --task easy-2 --encoding no-resolution   # without the input resolution
    python benchmarks/brp_nas_ofa.py --task easy-2 --drop titan_xp_1,v100_1   # fewer source devices
    python benchmarks/brp_nas_ofa.py --task easy-2 --shots 900 --param pretrain=false
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
from scipy.stats import spearmanr

import latbench_baselines.brp_nas as brp
from latbench.data import store
from latbench.data.store import get_space
from latbench.protocol.trial import make_trial
from latbench.tasks.spec import load_task
from latbench_baselines.brp_nas import BRPNAS


def _rho(a, b) -> float:
    return round(float(spearmanr(a, b)[0]), 4)


def _param(text: str):
    key, value = text.split("=", 1)
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, value


ENCODINGS = ("brp-nas", "no-resolution", "res-global", "res-input", "res2-layers")


def use_encoding(name: str) -> None:
    """Swap brp-nas's OFA encoding (``brp-nas``: the r one-hot on the input and active layer
    nodes) for a variant: ``no-resolution``: the bare chain graph (no resolution anywhere);
    ``res-global`` / ``res-input``: the r one-hot on the global / input node only;
    ``res2-layers``: the scalar (r / 224)^2 instead of the one-hot on the same nodes."""
    if name == "brp-nas":
        return
    from latbench.spaces.ofa import RESOLUTIONS

    ours = brp.encode

    def encode(space, ids):
        adj, x = ours(space, ids)
        if space.name != "ofa":
            return adj, x
        x, onehot = x[:, :, : -len(RESOLUTIONS)], x[:, :, -len(RESOLUTIONS) :]
        if name == "no-resolution":
            return adj, x
        code = onehot[:, 1]  # the input node always carries r
        extra = np.zeros_like(onehot)
        if name == "res-global":
            extra[:, 0] = code
        elif name == "res-input":
            extra[:, 1] = code
        else:
            r = np.asarray(RESOLUTIONS)[code.argmax(1)]
            extra = onehot.any(2, keepdims=True) * ((r / 224.0) ** 2)[:, None, None].astype(np.float32)
        return adj, np.concatenate([x, extra], axis=2)

    brp.encode = encode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="easy-2")
    ap.add_argument("--trial", type=int, default=0)
    ap.add_argument("--shots", type=int, default=10)
    ap.add_argument("--drop", default="", help="comma-separated source devices to leave out")
    ap.add_argument("--encoding", default="brp-nas", choices=ENCODINGS)
    ap.add_argument("--param", action="append", default=[], help="brp-nas parameter NAME=VALUE")
    args = ap.parse_args()
    use_encoding(args.encoding)
    task = load_task(args.task)
    table, space = store.load_latency(task.space), get_space(task.space)
    trial = make_trial(task, args.trial, args.shots, table, reference_ids=space.reference_ids)
    src = trial.source
    if args.drop:
        keep = [i for i, d in enumerate(src.devices) if d not in args.drop.split(",")]
        src = dataclasses.replace(src, devices=tuple(src.devices[i] for i in keep), latency=src.latency[keep])
    eval_ids = next(iter(trial.eval_ids.values()))
    out = {
        "task": task.id,
        "trial": args.trial,
        "shots": args.shots,
        "encoding": args.encoding,
        "sources": list(src.devices),
        "params": dict(map(_param, args.param)),
    }

    norm = src.latency / np.median(src.latency, axis=1, keepdims=True)
    pooled = np.median(norm, axis=0)  # the L1 minimiser per arch of the pooled pre-training loss
    src_truth = {d: table.device(d)[src.arch_ids] for d in src.devices}
    out["pooled_target_vs_source"] = {d: _rho(pooled, y) for d, y in src_truth.items()}
    flops = space.flops(eval_ids) if hasattr(space, "flops") else None
    out["flops_vs_target"] = {d: _rho(flops, table.device(d)[eval_ids]) for d in trial.oracles} if flops is not None else None

    m = BRPNAS(**out["params"])
    tic = time.perf_counter()
    m.fit(src, space, trial.seed)
    out["fit_s"] = round(time.perf_counter() - tic, 1)
    out["pretrain_epochs"] = getattr(m, "last_epochs_", None)
    if m.base_state_ is not None:
        base = m._new_model()
        base.load_state_dict(m.base_state_)
        p_src = m._forward(base, src.arch_ids)
        out["pretrained_vs_pooled_target"] = _rho(p_src, pooled)
        out["pretrained_vs_source"] = {d: _rho(p_src, y) for d, y in src_truth.items()}
        p_eval = m._forward(base, eval_ids)
        out["zero_shot_vs_target"] = {d: _rho(p_eval, table.device(d)[eval_ids]) for d in trial.oracles}
    out["finetuned_vs_target"] = {}
    for d, oracle in trial.oracles.items():
        m.adapt(d, oracle)
        out["finetuned_vs_target"][d] = _rho(m.predict(d, eval_ids), table.device(d)[eval_ids])
    out["finetuned_mean"] = round(float(np.mean(list(out["finetuned_vs_target"].values()))), 4)
    out["total_s"] = round(time.perf_counter() - tic, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
