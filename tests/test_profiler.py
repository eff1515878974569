"""The profiler on this machine's CPU: real timings of real models, resume and crash safety, bad settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from latbench.cli import app
from latbench.measure import profiler

FAST = dict(warmup=1, repeats=3)


@pytest.fixture()
def nb201(data):
    from latbench.data import store

    return store.load_space("nb201")


# Every profile() here passes max_wait=0: the contention guard (wait for a quiet CPU) is tested on its
# own below, and the suite runs on two workers, so the other worker's load would make each arch wait.
def _settings(space="nb201", runtimes=("torch",), precisions=("fp32",), threads=(1,)):
    return [profiler.Setting(space, r, "cpu", t, 1, p, **FAST) for r in runtimes for p in precisions for t in threads]


def _rows(folder):
    return profiler.read_jsonl(folder / "latency.jsonl")


@pytest.mark.slow
def test_profile_measures_torch_and_onnxruntime_with_kernel_breakdown(nb201, tmp_path):
    settings = _settings(runtimes=("torch", "onnxruntime"), precisions=("fp32", "int8"))
    settings = [s for s in settings if profiler.is_valid(s)]
    assert [(s.runtime, s.precision) for s in settings] == [("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]
    report = profiler.profile(nb201, settings, tmp_path, 12, name_prefix="testcpu", max_wait=0)
    assert report.measured == 12 and report.skipped == 0
    assert report.devices == ["testcpu-torch-t1-bs1-fp32", "testcpu-ort-t1-bs1-fp32", "testcpu-ort-t1-bs1-int8"]
    planned = [nb201.arch_str(i) for i in profiler.plan_archs(nb201, 12)]
    assert planned[:10] == [nb201.arch_str(int(i)) for i in nb201.reference_ids]  # reference archs first
    for dev in report.devices:
        folder = tmp_path / "nb201" / dev
        rows = _rows(folder)
        assert [r["arch"] for r in rows] == planned
        lat = np.array([r["latency_ms"] for r in rows])
        assert np.isfinite(lat).all() and (lat > 0).all()
        assert all(r["n"] == 3 and r["iqr_ms"] >= 0 and r["attempts"] >= 1 for r in rows)
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["setting"]["runtime"] in ("torch", "onnxruntime") and meta["hardware"]["torch"]
        assert (folder / "latency.parquet").is_file()
    # the kernel breakdown maps every conv/bn/linear module call onto the arch's layer list
    kdir = tmp_path / "nb201" / "testcpu-torch-t1-bs1-fp32"
    krows = profiler.read_jsonl(kdir / "kernels.jsonl")
    for entry in krows:
        layers = nb201.layers(nb201.index(entry["arch"]))
        heavy = [r for r in entry["rows"] if r[1] in ("conv", "bn", "linear")]
        assert len(heavy) == sum(1 for l in layers if l.type in ("conv", "bn", "linear"))
        assert all(r[0] >= 0 and layers[r[0]].type == r[1] and layers[r[0]].cin == r[3] for r in heavy)
    # per arch, the module times sum to less than the end-to-end latency (adds/overhead are outside modules)
    e2e = {r["arch"]: r["latency_ms"] for r in _rows(kdir)}
    ksum = {e["arch"]: sum(r[-1] for r in e["rows"]) for e in krows}
    assert np.median([ksum[a] / e2e[a] for a in e2e]) < 1.5


@pytest.mark.slow
def test_profile_resumes_and_survives_a_torn_last_line(nb201, tmp_path):
    settings = _settings()
    profiler.profile(nb201, settings, tmp_path, 11, name_prefix="x", max_wait=0)
    folder = tmp_path / "nb201" / "x-torch-t1-bs1-fp32"
    before = _rows(folder)
    # a run killed while writing: a half line at the end
    with open(folder / "latency.jsonl", "ab") as f:
        f.write(b'{"arch": "|nor_conv_3x3~0|+|')
    report = profiler.profile(nb201, settings, tmp_path, 13, name_prefix="x", max_wait=0)
    assert report.skipped == 11 and report.measured == 2  # only the new archs
    after = _rows(folder)
    assert after[:11] == before and len(after) == 13
    assert len({r["arch"] for r in after}) == 13  # nothing measured twice
    assert (folder / "latency.jsonl").read_bytes().endswith(b"\n")
    # killed between the kernel line and the latency line of the next arch: that arch is measured
    # again, and the finished tables hold one breakdown per arch, the new one
    nxt = nb201.arch_str(profiler.plan_archs(nb201, 14)[13])
    with open(folder / "kernels.jsonl", "a") as f:
        f.write(json.dumps({"arch": nxt, "rows": [[0, "conv", 32, 3, 16, 3, 1, 1, 99.0]]}) + "\n")
    profiler.profile(nb201, settings, tmp_path, 14, name_prefix="x", max_wait=0)
    import pyarrow.parquet as pq

    k = pq.read_table(folder / "kernels.parquet").to_pandas()
    last = {e["arch"]: len(e["rows"]) for e in profiler.read_jsonl(folder / "kernels.jsonl")}
    assert k["arch"].nunique() == 14 and k.groupby("arch").size().to_dict() == last
    assert 99.0 not in k["latency_ms"].to_numpy()


@pytest.mark.slow
def test_profile_refuses_to_mix_settings_in_one_folder(nb201, tmp_path):
    profiler.profile(nb201, _settings(), tmp_path, 10, name_prefix="x", max_wait=0)
    meta = tmp_path / "nb201" / "x-torch-t1-bs1-fp32" / "meta.json"
    text = json.loads(meta.read_text())
    text["setting"]["repeats"] = 99
    meta.write_text(json.dumps(text))
    with pytest.raises(profiler.ProfileError, match="other settings"):
        profiler.profile(nb201, _settings(), tmp_path, 10, name_prefix="x")


@pytest.mark.slow
def test_retest_records_test_retest_spearman(nb201, tmp_path):
    profiler.profile(nb201, _settings(), tmp_path, 14, name_prefix="x", retest=14, max_wait=0)
    result = json.loads((tmp_path / "nb201" / "x-torch-t1-bs1-fp32" / "retest.json").read_text())
    assert result["archs"] == 14 and -1 <= result["spearman"] <= 1
    folder = tmp_path / "nb201" / "x-torch-t1-bs1-fp32"
    first = {r["arch"]: r["latency_ms"] for r in _rows(folder)}
    second = {r["arch"]: r["latency_ms"] for r in profiler.read_jsonl(folder / "retest.jsonl")}
    assert sorted(first) == sorted(second)
    from scipy.stats import spearmanr

    archs = sorted(first)
    expected = spearmanr([first[a] for a in archs], [second[a] for a in archs]).statistic
    assert result["spearman"] == round(float(expected), 4)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--runtime", "tensorrt"], "unknown runtime"),
        (["--precision", "int8"], "use --runtime onnxruntime"),
        (["--precision", "fp16"], "fp16 is measured on GPU only"),
        (["--cuda-graphs"], "CUDA graphs need --device cuda"),
        (["--runtime", "onnxruntime", "--device", "cuda"], "CPU execution provider"),
        (["--threads", "0"], "threads and batch must be >= 1"),
        (["--repeats", "1"], "repeats >= 3"),
        (["--rounds", "0"], "--rounds must be >= 1"),
        (["--pin-cpus", "one"], "comma-separated CPU ids"),
        (["--pin-cpus", "99999"], "not available to this process"),
        (["--threads", "2", "--pin-cpus", "0"], "one CPU per thread"),
    ],
)
def test_profile_cli_rejects_bad_settings_and_writes_nothing(data, tmp_path, args, message):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["profile", "--space", "nb201", "--archs", "10", "--out", str(out), *args])
    assert res.exit_code == 1 and message in res.output, res.output
    assert not out.exists()


@pytest.mark.slow
def test_profile_cli_end_to_end(data, tmp_path):
    out = tmp_path / "m"
    res = CliRunner().invoke(
        app,
        [
            "profile",
            "--space",
            "fbnet",
            "--runtime",
            "onnxruntime",
            "--threads",
            "1",
            "--precision",
            "fp32",
            "--archs",
            "10",
            "--warmup",
            "1",
            "--repeats",
            "3",
            "--name",
            "ci",
            "--max-wait",
            "0",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "measured 10 archs" in res.output
    assert (out / "fbnet" / "ci-ort-t1-bs1-fp32" / "latency.parquet").is_file()


def test_device_names_are_systematic():
    s = profiler.Setting("nb201", "torch-graphs", "cuda", 1, 64, "fp16")
    assert profiler.device_name(s, "h100") == "h100-torch-graphs-bs64-fp16"
    s = profiler.Setting("nb201", "onnxruntime", "cpu", 2, 1, "int8")
    assert profiler.device_name(s, "epyc-2c") == "epyc-2c-ort-t2-bs1-int8"
    assert profiler.hardware_slug({"gpu_model": "NVIDIA H100 80GB HBM3"}, "cuda") == "h100"
    assert (
        profiler.hardware_slug({"cpu_model": "Intel(R) Xeon(R) Gold 6226 CPU @ 2.70GHz", "cpu_cores": 16}, "cpu")
        == "xeon-gold-6226-16c"
    )


def test_summary_statistics():
    t = np.array([1.0, 1.1, 0.9, 1.0, 50.0])  # one preempted run
    s = profiler.summarise(t)
    assert s["latency_ms"] == 1.0 and s["outliers"] == 1 and abs(s["trimmed_mean_ms"] - 1.0) < 1e-9


def test_contention_guard_retries_until_quiet_then_flags(monkeypatch):
    """A busy neighbour (other processes' jiffies during the timed block) triggers a re-measurement."""
    busy = iter([(0, 0), (500, 10), (500, 10), (1000, 20), (1000, 20), (1001, 21)])  # busy, busy, quiet
    monkeypatch.setattr(profiler, "_cpu_snapshot", lambda: next(busy))
    runs = iter([np.array([9.0, 9.0, 9.0]), np.array([5.0, 5.0, 5.0]), np.array([1.0, 1.0, 1.0])])
    sleeps = []
    result, attempts, contended = profiler.guarded(lambda: next(runs), max_wait=60, sleep=sleeps.append)
    assert attempts == 3 and not contended and result[0] == 1.0 and len(sleeps) == 2
    # never quiet: after max_wait the best (lowest median) attempt is kept and flagged
    always = iter([(0, 0), (500, 0)] * 10)
    monkeypatch.setattr(profiler, "_cpu_snapshot", lambda: next(always))
    runs = iter([np.array([3.0] * 3), np.array([2.0] * 3)])
    result, attempts, contended = profiler.guarded(lambda: next(runs), max_wait=0, sleep=sleeps.append)
    assert contended and attempts == 1 and result[0] == 3.0


@pytest.mark.slow
def test_ofa_archs_run_at_their_own_resolution(tmp_path):
    """OFA: every arch is timed (torch and ONNX Runtime) on inputs of its own resolution r."""
    from latbench.spaces.ofa import OFASpace

    archs = [f"r{r}-d22222-ks{'33003300330033003300'}-e{'33003300330033003300'}" for r in (128, 176, 224)]
    space = OFASpace(archs)
    space.reference_ids = np.arange(1)
    assert [profiler.input_shape(space, a) for a in space._strings] == [(3, 128, 128), (3, 176, 176), (3, 224, 224)]
    settings = _settings("ofa", runtimes=("torch", "onnxruntime"))
    report = profiler.profile(space, settings, tmp_path, 3, name_prefix="x", max_wait=0)
    assert report.measured == 3
    lat = {d: {r["arch"]: r["latency_ms"] for r in _rows(tmp_path / "ofa" / d)} for d in report.devices}
    for d in report.devices:
        assert sorted(lat[d]) == sorted(space._strings) and all(v > 0 for v in lat[d].values())
    krows = {e["arch"]: e["rows"] for e in profiler.read_jsonl(tmp_path / "ofa" / "x-torch-t1-bs1-fp32" / "kernels.jsonl")}
    for a in archs:
        stem = krows[space.canonical(a)][0]  # the first conv sees the arch's input size
        assert stem[1] == "conv" and stem[2] == int(a[1:4]) and stem[0] == 0
        assert all(r[0] >= 0 for r in krows[space.canonical(a)])  # every module call maps to a layer
    meta = json.loads((tmp_path / "ofa" / "x-ort-t1-bs1-fp32" / "meta.json").read_text())
    assert meta["protocol_version"] == profiler.PROTOCOL_VERSION and meta["rounds"] == 1 and meta["pinned_cpus"] is None


@pytest.mark.slow
def test_rounds_interleave_archs_and_resume(tmp_path):
    from latbench.spaces import space_class

    cls = space_class("nb201")
    space = cls(cls.all_archs()[::997][:8])
    space.reference_ids = np.arange(2)
    settings = _settings(runtimes=("torch", "onnxruntime"))
    profiler.profile(space, settings, tmp_path, 6, name_prefix="x", max_wait=0, rounds=2, retest=3)
    folder = tmp_path / "nb201" / "x-torch-t1-bs1-fp32"
    rounds = profiler.read_jsonl(folder / "rounds.jsonl")
    assert [r["round"] for r in rounds] == [1] * 6 + [2] * 6  # every arch once per pass, passes in turn
    assert [r["arch"] for r in rounds[:6]] == [r["arch"] for r in rounds[6:]]
    final = _rows(folder)
    assert len(final) == 6 and all(r["n"] == 6 and r["rounds"] == 2 for r in final)  # 2 rounds x 3 repeats
    first = final[0]
    times = np.concatenate([r["times"] for r in rounds if r["arch"] == first["arch"]])
    assert first["latency_ms"] == round(float(np.median(times)), 5)
    assert len(profiler.read_jsonl(folder / "retest-rounds.jsonl")) == 6
    assert json.loads((folder / "retest.json").read_text())["archs"] == 3
    assert len(profiler.read_jsonl(folder / "kernels.jsonl")) == 6  # the breakdown once per arch (last pass)
    # killed after an arch's last round line, before its final line: the rerun combines, measures nothing
    lines = (folder / "latency.jsonl").read_bytes().splitlines(keepends=True)
    (folder / "latency.jsonl").write_bytes(b"".join(lines[:-1]))
    report = profiler.profile(space, settings, tmp_path, 6, name_prefix="x", max_wait=0, rounds=2)
    assert report.measured == 1 and len(profiler.read_jsonl(folder / "rounds.jsonl")) == 12
    assert _rows(folder)[-1] == final[-1]
    with pytest.raises(profiler.ProfileError, match="holds a run with rounds 2, this run asks for 3"):
        profiler.profile(space, settings, tmp_path, 6, name_prefix="x", max_wait=0, rounds=3)


def test_pinned_run_records_its_cpus_and_restores_affinity(tmp_path):
    import os

    from latbench.spaces import space_class

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("needs Linux CPU affinity")
    cls = space_class("nb201")
    space = cls(cls.all_archs()[::1001][:4])
    space.reference_ids = np.arange(1)
    import torch  # noqa: F401  (loaded first, as in any test session: this run must not set OpenMP's binding)

    before = os.sched_getaffinity(0)
    cpu = max(before)
    profiler.profile(space, _settings(), tmp_path, 2, name_prefix="x", max_wait=0, pin_cpus=(cpu,))
    assert os.sched_getaffinity(0) == before
    meta = json.loads((tmp_path / "nb201" / "x-torch-t1-bs1-fp32" / "meta.json").read_text())
    assert meta["pinned_cpus"] == [cpu] and meta["omp_bound"] is False  # torch was loaded before this run
    with pytest.raises(profiler.ProfileError, match="pinned_cpus"):  # resuming with other pinning is refused
        profiler.profile(space, _settings(), tmp_path, 2, name_prefix="x", max_wait=0)
    with pytest.raises(profiler.ProfileError, match="one CPU per thread"):
        profiler.check_pin_cpus((cpu,), threads=2)
    with pytest.raises(profiler.ProfileError, match="not available"):
        profiler.check_pin_cpus((max(before) + 1000,), threads=1)
    assert profiler.check_pin_cpus((cpu, cpu), threads=1) == (cpu,)
