"""``latbench profile``: measure a space's architectures on this machine, resumably, with a kernel breakdown.

A measured "device" is hardware + runtime + settings, named systematically (see :func:`device_name`),
e.g. ``epyc-2c-torch-t1-bs1-fp32`` or ``h100-torch-graphs-bs64-fp16``. One run may measure several
such devices at once (``--threads 1 --threads 2``, ``--runtime torch --runtime onnxruntime``): each arch
is built once and timed under every setting, which keeps the settings' conditions close in time.

Measurement protocol (also written into every device's ``meta.json`` and the dataset card):

- the arch is built with the space's PyTorch builder (``SearchSpace.build_torch``), eval mode,
  random weights (latency does not depend on the weight values for these dense ops);
- inputs: ``ROTATE`` different random tensors of the space's input shape, used in turn, so no run
  sees the same input twice in a row;
- inputs at the arch's own resolution where the space has one (OFA: ``r`` of the arch string,
  :meth:`~latbench.spaces.ofa.OFASpace.input_shape_of`), else the space's input shape;
- ``warmup`` untimed forwards, then ``repeats`` timed forwards, each timed alone: ``perf_counter_ns``
  on CPU, CUDA events after a synchronise on GPU; with CUDA graphs the warm-up forwards run on a
  side stream, then the forward is captured once and each repeat is one graph replay;
- ``rounds`` (default 1): with R > 1 the run makes R interleaved passes over all its archs (every
  arch once per pass, the warm-up and the ``repeats`` timed forwards each time), so a slow spell of
  the machine touches every arch a little instead of a few archs a lot; the reported statistics
  are over all R x ``repeats`` timed forwards;
- ``pin_cpus`` (default none): the process is confined to the listed CPUs for the run, ONNX
  Runtime's intra-op worker threads get one listed CPU each, and eager PyTorch's OpenMP threads are
  bound in list order when the run starts before torch is loaded (``GOMP_CPU_AFFINITY``); ``meta.json``
  records what took effect;
- reported: the median (robust to the occasional preempted run, so nothing is discarded), the
  inter-quartile range, the mean of the runs inside Tukey's fences (1.5 IQR), and how many runs
  fell outside them;
- ONNX Runtime: the model is exported with ``torch.onnx.export`` (opset 17), run by the CPU
  execution provider with ``intra_op_num_threads = threads``, all graph optimisations on; int8 is
  static QDQ quantisation (``onnxruntime.quantization.quantize_static``, per-tensor, calibrated on
  4 random inputs: calibration quality changes accuracy, not latency);
- kernel breakdown (torch runtimes, CPU only): ``KERNEL_PASSES`` extra forwards with a timer around
  every leaf module (``perf_counter_ns`` in forward pre/post hooks); each leaf call is mapped back
  to the space's layer list by its signature (type, input size, channels, kernel, stride, groups).
  Element-wise adds between modules are not modules, so they are not in the breakdown: the
  end-to-end latency minus the kernel sum is the framework overhead plus those adds.

Contention guard: timings are only meaningful on an otherwise idle machine (a busy neighbour makes
multi-threaded runs wait for descheduled threads at every barrier: 2-thread latencies grew up to
50x in our first attempt). Around every timed block the profiler reads ``/proc/stat``; if other
processes used more than ``CONTENTION_SHARE`` of the CPU meanwhile, it waits and measures again,
up to ``max_wait`` seconds per arch; a result that never got a quiet window is kept with
``contended: true`` (and ``attempts``), so users can drop it. Off on systems without ``/proc``.

Crash safety: each device folder gets ``meta.json`` first, then one JSON line per arch appended and
fsynced to ``latency.jsonl`` (and ``kernels.jsonl``); a rerun skips the archs already there, so a
killed run loses at most the arch in flight. With ``rounds`` > 1 each pass appends one line per
arch to ``rounds.jsonl`` (its timed runs), and the last pass writes the arch's ``latency.jsonl``
line from its rounds; a rerun resumes at the first missing (arch, round). ``--retest N`` is a
second session over the first N archs with the same protocol (``retest.jsonl``,
``retest-rounds.jsonl``), summarised in ``retest.json``. A torn last line (no newline: the run died mid-write)
is dropped with a note; any other line that is not a valid record (corrupt bytes, a hand edit) is
never silently lost: it is moved, with its line number, to ``latency.corrupt.jsonl`` (or
``kernels.corrupt.jsonl``), reported, and its arch measured again, while every valid line stays.
One run at a time per device folder: a run holds an ``fcntl`` lock on ``<device>/.lock`` (dropped
by the kernel when the run exits, however it exits), and a second run on the same folder is
refused. At the end the lines are converted to ``latency.parquet``/``kernels.parquet`` (one row per
arch, its last measurement), the form ``latbench data add-source`` and ``data build`` read.
"""

from __future__ import annotations

import functools
import io
import json
import os
import platform
import re
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from latbench.errors import LatbenchError
from latbench.io import write_bytes, write_parquet, write_text
from latbench.locks import FileLock, LockBusy
from latbench.text import name_problem

RUNTIMES = ("torch", "torch-graphs", "onnxruntime")
CONTENTION_SHARE = 0.05  # other processes' share of all CPU time during a timed block that counts as contended
PRECISIONS = ("fp32", "fp16", "int8")
ROTATE = 4
KERNEL_PASSES = 5
#: 2: inputs at the arch's resolution (OFA), optional interleaved ``rounds`` and ``pin_cpus``
#: (a version-1 folder is a version-2 one with rounds 1 and no pinning).
PROTOCOL_VERSION = 2
#: Added to an arch's input seed in the retest session (new inputs, same distribution).
RETEST_SEED_OFFSET = 7919

#: leaf module class name -> the space layer type it computes
_LEAF_TYPES = {
    "Conv2d": "conv",
    "BatchNorm2d": "bn",
    "ReLU": "relu",
    "ReLU6": "relu",
    "Hardswish": "hswish",
    "Hardsigmoid": "hsigmoid",
    "AvgPool2d": "avgpool",
    "AdaptiveAvgPool2d": "gap",
    "Linear": "linear",
    "ChannelShuffle": "shuffle",
}


class ProfileError(LatbenchError):
    pass


@dataclass(frozen=True)
class Setting:
    """One measured device: where and how a forward pass runs."""

    space: str
    runtime: str
    device: str  # "cpu" | "cuda"
    threads: int
    batch: int
    precision: str
    warmup: int = 5
    repeats: int = 20

    def check(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ProfileError(f"unknown runtime {self.runtime!r}; choose from {', '.join(RUNTIMES)}")
        if self.precision not in PRECISIONS:
            raise ProfileError(f"unknown precision {self.precision!r}; choose from {', '.join(PRECISIONS)}")
        if self.device not in ("cpu", "cuda"):
            raise ProfileError(f"unknown device {self.device!r}; choose cpu or cuda")
        if self.runtime == "torch-graphs" and self.device != "cuda":
            raise ProfileError("CUDA graphs need --device cuda")
        if self.runtime == "onnxruntime" and self.device != "cpu":
            raise ProfileError("the onnxruntime runtime measures the CPU execution provider: use --device cpu")
        if self.precision == "int8" and self.runtime != "onnxruntime":
            raise ProfileError("int8 is measured with ONNX Runtime quantisation: use --runtime onnxruntime")
        if self.precision == "fp16" and self.device != "cuda":
            raise ProfileError("fp16 is measured on GPU only (CPU fp16 kernels are emulated): use --device cuda")
        if self.threads < 1 or self.batch < 1 or self.warmup < 0 or self.repeats < 3:
            raise ProfileError("threads and batch must be >= 1, warmup >= 0 and repeats >= 3")

    @property
    def kernels(self) -> bool:
        """Whether this setting records the per-layer breakdown (eager torch on CPU)."""
        return self.runtime == "torch" and self.device == "cpu"


def is_valid(s: Setting) -> bool:
    try:
        s.check()
    except ProfileError:
        return False
    return True


def hardware(device: str) -> dict:
    """What the timings ran on: CPU/GPU model, core count, library versions."""
    import torch

    info = {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    if device == "cuda":
        info["gpu_model"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        props = torch.cuda.get_device_properties(0)
        info["gpu_memory_gb"] = round(props.total_memory / 2**30, 1)
        info["gpu_sm_count"] = props.multi_processor_count
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def hardware_slug(hw: dict, device: str) -> str:
    """Short hardware name for device names: ``h100``, ``epyc-2c``, ``xeon-gold-6226-16c``."""
    if device == "cuda":
        name = hw.get("gpu_model", "gpu").lower()
        m = re.search(r"\b([a-z]?\d{3,4}[a-z]*)\b", name.replace("nvidia", "").replace("geforce", ""))
        return m.group(1) if m else (re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "gpu")
    words = re.sub(r"\(r\)|\(tm\)|cpu|processor|@.*$|\d+-core", " ", hw["cpu_model"].lower())
    words = re.sub(r"\b(intel|amd|core)\b", " ", words)
    slug = re.sub(r"[^a-z0-9]+", "-", words).strip("-") or "cpu"
    return f"{slug}-{hw['cpu_cores']}c"


def device_name(s: Setting, slug: str) -> str:
    runtime = {"torch": "torch", "torch-graphs": "torch-graphs", "onnxruntime": "ort"}[s.runtime]
    threads = f"-t{s.threads}" if s.device == "cpu" else ""
    return f"{slug}-{runtime}{threads}-bs{s.batch}-{s.precision}"


def summarise(times_ms: np.ndarray) -> dict:
    """Median, IQR, Tukey-trimmed mean and outlier count of one arch's timed runs."""
    q1, med, q3 = np.percentile(times_ms, [25, 50, 75])
    iqr = q3 - q1
    inside = (times_ms >= q1 - 1.5 * iqr) & (times_ms <= q3 + 1.5 * iqr)
    return {
        "latency_ms": round(float(med), 5),
        "iqr_ms": round(float(iqr), 5),
        "trimmed_mean_ms": round(float(times_ms[inside].mean()), 5),
        "outliers": int((~inside).sum()),
        "n": int(len(times_ms)),
    }


# ---- contention guard ------------------------------------------------------------------------
def _cpu_snapshot() -> tuple[int, int] | None:
    """(busy jiffies of all CPUs, jiffies of this process incl. all its threads), or None without /proc."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return user + nice + system + irq + softirq + steal, int(own[11]) + int(own[12])


def guarded(measure, max_wait: float, sleep=time.sleep, key=np.median):
    """Run ``measure()`` until a run saw no competing CPU load; returns (result, attempts, contended)."""
    hz, ncpu = os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1
    deadline = time.monotonic() + max_wait
    best, attempts = None, 0
    while True:
        attempts += 1
        before, t0 = _cpu_snapshot(), time.monotonic()
        result = measure()
        after, wall = _cpu_snapshot(), time.monotonic() - t0
        if before is None or after is None:
            return result, attempts, False
        others = (after[0] - before[0]) - (after[1] - before[1])
        if others <= max(2, CONTENTION_SHARE * wall * hz * ncpu):
            return result, attempts, False
        if best is None or key(result) < key(best):
            best = result
        if time.monotonic() >= deadline:
            return best, attempts, True
        sleep(min(2.0 * attempts, 10.0))


# ---- runners: one per runtime, each returns the timed runs in ms ----------------------------
def input_shape(space, arch: str) -> tuple[int, ...]:
    """(channels, height, width) of one arch's input: its own resolution where the space has one (OFA)."""
    per_arch = getattr(space, "input_shape_of", None)
    return tuple(per_arch(arch)) if per_arch is not None else tuple(space.input_shape)


def _inputs(space, s: Setting, seed: int, arch: str):
    import torch

    g = torch.Generator().manual_seed(seed)
    shape = input_shape(space, arch)
    xs = [torch.randn(s.batch, *shape, generator=g) for _ in range(ROTATE)]
    if s.device == "cuda":
        xs = [x.cuda() for x in xs]
    if s.precision == "fp16":
        xs = [x.half() for x in xs]
    return xs


def _time_torch(model, xs, s: Setting) -> np.ndarray:
    import torch

    torch.set_num_threads(s.threads)
    with torch.inference_mode():
        for i in range(s.warmup):
            model(xs[i % ROTATE])
        out = np.empty(s.repeats)
        if s.device == "cpu":
            for i in range(s.repeats):
                t0 = time.perf_counter_ns()
                model(xs[i % ROTATE])
                out[i] = (time.perf_counter_ns() - t0) / 1e6
            return out
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        for i in range(s.repeats):
            torch.cuda.synchronize()
            start.record()
            model(xs[i % ROTATE])
            end.record()
            end.synchronize()
            out[i] = start.elapsed_time(end)
        return out


def _time_cuda_graph(model, xs, s: Setting) -> np.ndarray:
    import torch

    static_x = xs[0].clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode():
        with torch.cuda.stream(side):
            for i in range(max(s.warmup, 3)):
                model(xs[i % ROTATE])
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(static_x)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        out = np.empty(s.repeats)
        for i in range(s.repeats):
            static_x.copy_(xs[i % ROTATE])
            torch.cuda.synchronize()
            start.record()
            graph.replay()
            end.record()
            end.synchronize()
            out[i] = start.elapsed_time(end)
    return out


def export_onnx(model, x) -> bytes:
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buf, dynamo=False, input_names=["x"], output_names=["y"], opset_version=17)
    return buf.getvalue()


def quantize_int8(onnx_bytes: bytes, xs) -> bytes:
    """Static QDQ int8 model (per-tensor), calibrated on the rotating inputs."""
    import logging
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{"x": x.numpy()} for x in xs])

        def get_next(self):
            return next(self._it, None)

    logging.getLogger().setLevel(logging.ERROR)  # ORT's quantiser logs a pre-processing hint per model
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d, "m.onnx"), Path(d, "q.onnx")
        src.write_bytes(onnx_bytes)
        quantize_static(
            str(src),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        return dst.read_bytes()


def _time_ort(onnx_bytes: bytes, xs, s: Setting, pin_cpus: tuple[int, ...] = ()) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = s.threads
    opts.inter_op_num_threads = 1
    if pin_cpus and s.threads > 1:  # worker threads 1..n-1, one listed CPU each (ORT counts CPUs from 1)
        opts.add_session_config_entry("session.intra_op_thread_affinities", ";".join(str(c + 1) for c in pin_cpus[1 : s.threads]))
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    feeds = [{"x": x.numpy()} for x in xs]
    for i in range(s.warmup):
        sess.run(None, feeds[i % ROTATE])
    out = np.empty(s.repeats)
    for i in range(s.repeats):
        t0 = time.perf_counter_ns()
        sess.run(None, feeds[i % ROTATE])
        out[i] = (time.perf_counter_ns() - t0) / 1e6
    return out


def kernel_breakdown(model, xs, space, arch: str, threads: int) -> list[list]:
    """Per leaf-module median time, mapped to the arch's layer list: rows [layer, type, h, cin, cout, k, s, g, ms]."""
    import torch

    torch.set_num_threads(threads)
    calls: list[list] = [[]]  # per forward pass: [(signature, ns)]; the first pass is untimed
    t_start: dict[int, int] = {}
    leaves = [(i, m) for i, m in enumerate(model.modules()) if type(m).__name__ in _LEAF_TYPES]

    def pre(i):
        def hook(mod, inp):
            t_start[i] = time.perf_counter_ns()

        return hook

    def post(i):
        def hook(mod, inp, out):
            dt = time.perf_counter_ns() - t_start[i]
            calls[-1].append((_signature(mod, inp[0], out), dt))

        return hook

    handles = []
    for i, m in leaves:
        handles += [m.register_forward_pre_hook(pre(i)), m.register_forward_hook(post(i))]
    try:
        with torch.inference_mode():
            model(xs[0])  # one untimed pass with hooks (their first call allocates)
            for p in range(KERNEL_PASSES):
                calls.append([])
                model(xs[p % ROTATE])
    finally:
        for h in handles:
            h.remove()
    passes = calls[-KERNEL_PASSES:]
    times = np.median(np.array([[dt for _, dt in c] for c in passes], dtype=np.float64), axis=0) / 1e6
    layer_of = map_to_layers([sig for sig, _ in passes[0]], space.layers(space.index(arch)))
    return [[layer_of[j], *passes[0][j][0], round(float(times[j]), 5)] for j in range(len(times))]


def _signature(mod, x, y) -> tuple:
    kind = _LEAF_TYPES[type(mod).__name__]
    h = 1 if kind == "linear" else int(x.shape[-1])
    cin, cout = int(x.shape[1]), int(y.shape[1])
    k = getattr(mod, "kernel_size", 1)
    s = getattr(mod, "stride", 1)
    k, s = (k[0] if isinstance(k, tuple) else k), (s[0] if isinstance(s, tuple) else s)
    if kind == "gap":
        k, s = 1, 1
    g = getattr(mod, "groups", 1)
    return (kind, h, cin, cout, int(k or 1), int(s or 1), int(g))


def map_to_layers(signatures: list[tuple], layers) -> list[int]:
    """For each leaf call, the index of the first unused layer with the same signature (-1 if none)."""
    free: dict[tuple, list[int]] = {}
    for i, l in enumerate(layers):
        key = (
            l.type,
            l.h if l.type != "linear" else 1,
            l.cin,
            l.cout,
            l.kernel if l.type != "gap" else 1,
            l.stride if l.type != "gap" else 1,
            l.groups,
        )
        free.setdefault(key, []).append(i)
    return [free[sig].pop(0) if free.get(sig) else -1 for sig in signatures]


# ---- the streaming store of one device ----------------------------------------------------
LOCK_NAME = ".lock"


class DeviceLog:
    """``<out>/<space>/<device>/``: meta.json + append-only JSONL, resumable, then parquet.

    :meth:`lock` first (one run per folder), then :meth:`open`; :meth:`release` at the end.
    """

    def __init__(self, root: Path, space: str, name: str, meta: dict, log=lambda msg: None):
        self.dir = Path(root) / space / name
        self.meta = meta
        self.log = log
        self.latency_path = self.dir / "latency.jsonl"
        self.kernel_path = self.dir / "kernels.jsonl"
        self.retest_path = self.dir / "retest.jsonl"
        self._lock = FileLock(self.dir / LOCK_NAME)
        self._created = False
        self._rounds: dict[str, dict[tuple[str, int], dict]] = {}
        self.kernel_archs: set[str] = set()

    def lock(self) -> None:
        """Take the folder's lock; ProfileError if another live run holds it (a dead run's lock file is reused)."""
        self._created = not self.dir.exists()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except LockBusy as e:
            self._undo_mkdir()
            raise ProfileError(
                f"{self.dir}: another `latbench profile` ({e.holder}) is measuring into this folder; "
                "wait for it to finish, or use another --out"
            ) from None
        except OSError as e:
            self._undo_mkdir()
            raise ProfileError(f"{self.dir}: cannot create the folder or its lock file ({e.strerror or e})") from None

    def release(self, *, undo: bool = False) -> None:
        """Drop the lock; ``undo``: also remove the folder if this run created it and wrote nothing yet."""
        self._lock.release()
        if undo:
            self._undo_mkdir()

    def _undo_mkdir(self) -> None:
        if self._created and not self._lock.held:
            try:
                (self.dir / LOCK_NAME).unlink(missing_ok=True)
                self.dir.rmdir()  # only if empty: never removes measurements
            except OSError:
                pass

    def open(self) -> set[str]:
        """Create or resume (under the lock); returns the arch strings already measured."""
        if not self._lock.held:
            self.lock()
        meta_path = self.dir / "meta.json"
        if meta_path.exists():
            old = read_meta(meta_path)
            if old.get("setting") != self.meta["setting"]:
                raise ProfileError(f"{self.dir}: holds a run with other settings ({old.get('setting')}); use another --out")
            for key, default in PROTOCOL_OPTIONS.items():  # a folder from before an option existed ran its default
                if old.get(key, default) != self.meta.get(key, default):
                    raise ProfileError(
                        f"{self.dir}: holds a run with {key} {old.get(key, default)}, this run asks for "
                        f"{self.meta.get(key, default)}; rerun with the same protocol options or use another --out"
                    )
        elif self.latency_path.exists() and self.latency_path.stat().st_size:
            raise ProfileError(
                f"{self.dir}: latency.jsonl without meta.json, so the settings of its measurements are unknown; "
                "restore meta.json or use another --out"
            )
        else:
            write_text(meta_path, json.dumps(self.meta, indent=2) + "\n")
        self._created = False
        done = {r["arch"] for r in read_jsonl(self.latency_path, self.log)}
        if self.kernel_path.exists() or self.meta.get("kernel_passes"):
            self.kernel_archs = {r["arch"] for r in read_jsonl(self.kernel_path, self.log)}  # repairs that file too
            if self.meta.get("kernel_passes"):
                # an arch whose kernel line was lost is measured again (finalize keeps its last measurement)
                done &= self.kernel_archs
        return done

    def final_path(self, stream: str) -> Path:
        """``latency.jsonl`` (the run) or ``retest.jsonl`` (the retest session): one line per finished arch."""
        return self.latency_path if stream == "latency" else self.retest_path

    def rounds(self, stream: str) -> dict[tuple[str, int], dict]:
        """(arch, round) -> that round's line, of ``rounds.jsonl`` / ``retest-rounds.jsonl`` (last line wins)."""
        if stream not in self._rounds:
            path = self.dir / ("rounds.jsonl" if stream == "latency" else "retest-rounds.jsonl")
            self._rounds[stream] = {(r["arch"], r["round"]): r for r in read_jsonl(path, self.log)}
        return self._rounds[stream]

    def append(self, row: dict, kernels: list | None, stream: str = "latency") -> None:
        if kernels is not None:  # kernels first: a latency line implies its kernel line exists
            self.append_kernels(row["arch"], kernels)
        _append_line(self.final_path(stream), row)

    def append_kernels(self, arch: str, kernels: list) -> None:
        _append_line(self.kernel_path, {"arch": arch, "rows": kernels})
        self.kernel_archs.add(arch)

    def append_round(self, row: dict, stream: str = "latency") -> None:
        path = self.dir / ("rounds.jsonl" if stream == "latency" else "retest-rounds.jsonl")
        _append_line(path, row)
        self.rounds(stream)[(row["arch"], row["round"])] = row


def read_meta(path: Path) -> dict:
    """A device folder's ``meta.json`` as a dict; ProfileError (one line) if it is unreadable or not an object."""
    try:
        meta = json.loads(Path(path).read_bytes())
    except OSError as e:
        raise ProfileError(f"{path}: unreadable ({e.strerror or type(e).__name__})") from None
    except json.JSONDecodeError as e:
        raise ProfileError(
            f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); it records the folder's "
            "settings: restore it, or use another --out"
        ) from None
    except (ValueError, RecursionError) as e:  # not UTF-8, or absurdly nested
        raise ProfileError(f"{path}: not valid JSON ({type(e).__name__}); restore it, or use another --out") from None
    if not isinstance(meta, dict):
        raise ProfileError(f"{path}: expected a JSON object, found a JSON {_json_kind(meta)}; restore it, or use another --out")
    return meta


def _append_line(path: Path, obj: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(obj, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _json_kind(obj) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(obj), "number")


def _row_problem(obj, kind: str) -> str | None:
    """Why a parsed JSONL line is not a record of its file (None if it is one); ``kind``: see :func:`_kind`."""
    if not isinstance(obj, dict):
        return f"a JSON {_json_kind(obj)}, not an object"
    if not isinstance(obj.get("arch"), str):
        return 'no "arch" string'
    if kind == "kernels":
        rows = obj.get("rows")
        if not isinstance(rows, list) or not all(_is_kernel_row(r) for r in rows):
            return '"rows" is not a list of [layer, op, h, cin, cout, kernel, stride, groups, ms] rows'
        return None
    if kind == "rounds":
        if not _is_int(obj.get("round")) or obj["round"] < 1:
            return '"round" is not an integer >= 1'
        times = obj.get("times")
        if not isinstance(times, list) or not times or not all(_is_number(t) and t > 0 for t in times):
            return '"times" is not a list of positive numbers'
        return None
    if not _is_number(obj.get("latency_ms")) or not obj["latency_ms"] > 0:
        return '"latency_ms" is not a positive number'
    for key in ("iqr_ms", "trimmed_mean_ms"):
        if obj.get(key) is not None and not _is_number(obj[key]):
            return f'"{key}" is not a number'
    for key in ("outliers", "n", "attempts"):
        if obj.get(key) is not None and not _is_int(obj[key]):
            return f'"{key}" is not an integer'
    if obj.get("contended") is not None and not isinstance(obj["contended"], bool):
        return '"contended" is not true/false'
    return None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


def _is_kernel_row(r) -> bool:
    return (
        isinstance(r, list)
        and len(r) == 9
        and isinstance(r[1], str)
        and all(_is_int(v) for v in (r[0], *r[2:8]))
        and _is_number(r[8])
        and r[8] >= 0
    )


def _kind(path: Path) -> str:
    """What a JSONL file's lines hold: ``kernels`` (per-layer rows), ``rounds`` (one round's timed
    runs of an arch) or ``latency`` (an arch's summary: latency.jsonl, retest.jsonl)."""
    if path.name.startswith("kernels"):
        return "kernels"
    return "rounds" if path.name.endswith("rounds.jsonl") else "latency"


def _parse_line(line: bytes, kind: str) -> tuple[dict | None, str | None]:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        return None, f"not valid JSON ({e.msg})"
    except (ValueError, RecursionError) as e:  # bad UTF-8, absurd nesting
        return None, f"not valid JSON ({type(e).__name__})"
    problem = _row_problem(obj, kind)
    return (None, problem) if problem else (obj, None)


def read_jsonl(path: Path, log=lambda msg: None) -> list[dict]:
    """Rows of a JSONL stream (``latency.jsonl``, ``kernels.jsonl``, ``retest.jsonl``, ``*rounds.jsonl``), repaired in place.

    - a torn last line (no newline: a run killed mid-write) is cut off with a note, or completed
      if it is a whole record that only misses its newline;
    - any other line that is not a valid record is moved to ``<stem>.corrupt.jsonl`` as
      ``{"line": <1-based number>, "reason": ..., "text": ...}`` and reported (one line through
      ``log``); every valid line stays, byte for byte, in order.
    """
    path = Path(path)
    if not path.exists():
        return []
    kind = _kind(path)
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # what follows the last newline: empty unless the last line is torn
    rows, keep, corrupt, torn = [], [], [], None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue  # an empty line holds nothing
        obj, problem = _parse_line(line, kind)
        if obj is None:
            corrupt.append((n, problem, line))
            continue
        rows.append(obj)
        keep.append(line + b"\n")
    if tail.strip():
        obj, _ = _parse_line(tail, kind)
        if obj is not None:  # a whole record that only misses its newline
            rows.append(obj)
            keep.append(tail + b"\n")
        else:
            torn = len(lines) + 1
    if corrupt:
        aside = path.with_name(f"{path.stem}.corrupt.jsonl")
        with open(aside, "a", encoding="utf-8") as f:
            for n, problem, line in corrupt:
                text = line.decode("utf-8", errors="backslashreplace")
                f.write(json.dumps({"line": n, "reason": problem, "text": text}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        numbers = ", ".join(str(n) for n, _, _ in corrupt[:5]) + (", ..." if len(corrupt) > 5 else "")
        log(
            f"warning: {path}: {len(corrupt)} corrupt line(s) (line {numbers}: {corrupt[0][1]}) moved to {aside.name}; "
            "every valid line is kept and the archs of the corrupt ones are measured again"
        )
    if torn is not None:
        log(f"note: {path}: dropped the unterminated last line {torn} (a run stopped while writing it)")
    new = b"".join(keep)
    if new != data:
        write_bytes(path, new)  # atomic: a crash now leaves the old file (its bad lines are set aside again)
    return rows


# ---- the run ---------------------------------------------------------------------------------
def plan_archs(space, n: int, seed: int = 0) -> list[int]:
    """The space's reference archs first, then a seeded sample: a larger ``n`` extends the same list."""
    refs = [int(i) for i in space.reference_ids]
    rest = np.setdiff1d(space.arch_ids(), refs)
    order = np.random.default_rng(seed).permutation(rest)
    return (refs + order.tolist())[: max(n, len(refs))]


@dataclass
class RunReport:
    devices: list[str]
    measured: int
    skipped: int
    seconds: float


#: Protocol options recorded in meta.json, with the value a folder that does not record one ran.
PROTOCOL_OPTIONS = {"rounds": 1, "pinned_cpus": None}


def check_pin_cpus(pin_cpus, threads: int) -> tuple[int, ...]:
    """The CPUs to pin to, in order (duplicates dropped); ProfileError if this process cannot use them."""
    pin = tuple(dict.fromkeys(int(c) for c in pin_cpus))
    if not pin:
        return ()
    if not hasattr(os, "sched_setaffinity"):
        raise ProfileError("--pin-cpus needs Linux (sched_setaffinity); run without it")
    allowed = os.sched_getaffinity(0)
    bad = [c for c in pin if c not in allowed]
    if bad:
        raise ProfileError(f"--pin-cpus: CPU(s) {bad} are not available to this process (available: {sorted(allowed)})")
    if threads > len(pin):
        raise ProfileError(f"--pin-cpus lists {len(pin)} CPU(s) but a setting runs {threads} threads: list one CPU per thread")
    return pin


def profile(
    space,
    settings: list[Setting],
    out: Path,
    n_archs: int,
    *,
    seed: int = 0,
    name_prefix: str | None = None,
    retest: int = 0,
    max_wait: float = 300.0,
    rounds: int = 1,
    pin_cpus=(),
    progress=None,
    log=lambda msg: None,
) -> RunReport:
    """Measure ``n_archs`` archs of ``space`` under every setting; resumes what ``out`` already holds.

    Parameters
    ----------
    rounds
        Interleaved passes over the archs (see the module docstring); every pass times each arch
        ``repeats`` times.
    pin_cpus
        CPU ids to confine the run to (at least one per thread), e.g. ``(1,)`` for one thread on
        CPU 1; empty: no pinning.
    """
    for s in settings:
        s.check()
    if rounds < 1:
        raise ProfileError(f"rounds must be >= 1, got {rounds}")
    device = settings[0].device
    if any(s.device != device for s in settings):
        raise ProfileError("one run measures one device (cpu or cuda); start a second run for the other")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ProfileError("--device cuda but torch sees no CUDA GPU")
    if any(s.runtime == "onnxruntime" for s in settings):
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ProfileError("the onnxruntime runtime needs `pip install latbench[profile]`") from None
    if name_prefix is not None and name_problem(name_prefix):
        raise ProfileError(f"--name: {name_problem(name_prefix)}")
    pin = check_pin_cpus(pin_cpus, max(s.threads for s in settings))
    omp_bound, before = None, (os.sched_getaffinity(0) if pin else None)  # before torch loads: OpenMP pins the thread
    if pin:
        # OpenMP reads its binding once, when torch loads it: only a run that starts before can set it
        fresh = "torch" not in sys.modules
        if fresh and "GOMP_CPU_AFFINITY" not in os.environ:
            os.environ["GOMP_CPU_AFFINITY"] = " ".join(map(str, pin))
        omp_bound = fresh and os.environ.get("GOMP_CPU_AFFINITY") == " ".join(map(str, pin))
    settings = list(dict.fromkeys(settings))  # a setting repeated on the command line is one device
    hw = hardware(device)
    slug = name_prefix or hardware_slug(hw, device)
    logs = []
    for s in settings:
        if name_problem(device_name(s, slug)):
            raise ProfileError(f"device name {name_problem(device_name(s, slug))}; pass --name")
        meta = {
            "device": device_name(s, slug),
            "space": space.name,
            "setting": asdict(s),
            "hardware": hw,
            "protocol_version": PROTOCOL_VERSION,
            "rotate_inputs": ROTATE,
            "kernel_passes": KERNEL_PASSES if s.kernels else 0,
            "rounds": rounds,
            "pinned_cpus": list(pin) or None,
            "omp_bound": omp_bound,
            "seed": seed,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "reference_archs": [space.arch_str(int(i)) for i in space.reference_ids],
            "contention_guard": {"share": CONTENTION_SHARE, "max_wait_s": max_wait, "active": _cpu_snapshot() is not None},
            "notes": "timings on a machine that may run other work; see retest.json for the test-retest noise",
        }
        logs.append(DeviceLog(out, space.name, meta["device"], meta, log))
    locked: list[DeviceLog] = []
    try:
        for lg in logs:  # every folder locked before anything is written to any of them
            lg.lock()
            locked.append(lg)
    except BaseException:
        for lg in locked:
            lg.release(undo=True)
        raise
    try:
        if pin:
            os.sched_setaffinity(0, pin)
        return _run(space, settings, logs, n_archs, seed, retest, max_wait, rounds, pin, progress, log)
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)
        for lg in logs:
            lg.release()


def _run(space, settings, logs, n_archs, seed, retest, max_wait, rounds, pin, progress, log) -> RunReport:
    done = [lg.open() for lg in logs]
    ids = plan_archs(space, n_archs, seed)
    todo = [i for i in ids if any(space.arch_str(i) not in d for d in done)]
    log(
        f"{space.name}: {len(ids)} archs planned, {len(ids) - len(todo)} already measured, {len(todo)} to go, "
        f"devices: {', '.join(l.meta['device'] for l in logs)}" + (f"; {rounds} interleaved rounds" if rounds > 1 else "")
    )
    t0 = time.perf_counter()
    jobs = list(zip(settings, logs))
    _passes(space, todo, jobs, done, seed, max_wait, rounds, pin, "latency", progress)
    if retest:
        # the second session: the first ``retest`` archs again, new inputs, same protocol
        measured = [{r["arch"] for r in read_jsonl(lg.latency_path, lg.log)} for lg in logs]
        finished = [
            {r["arch"] for r in read_jsonl(lg.retest_path, lg.log)} | _unmeasured(space, ids[:retest], m)
            for lg, m in zip(logs, measured)
        ]
        _passes(space, ids[:retest], jobs, finished, seed + RETEST_SEED_OFFSET, max_wait, rounds, pin, "retest")
        for lg in logs:
            write_retest(lg)
    for lg in logs:
        finalize(lg.dir, log)
    return RunReport([l.meta["device"] for l in logs], len(todo), len(ids) - len(todo), time.perf_counter() - t0)


def _unmeasured(space, ids, measured: set[str]) -> set[str]:
    """Archs of ``ids`` without a first measurement: nothing to retest (marked finished)."""
    return {a for a in (space.arch_str(i) for i in ids) if a not in measured}


def _passes(space, ids, jobs, finished, seed, max_wait, rounds, pin, stream, progress=None) -> None:
    """Time ``ids`` under every job ``(setting, DeviceLog)`` in ``rounds`` interleaved passes.

    ``finished[j]``: archs job ``j`` already has a final line for (skipped, and grown as archs
    finish). With one round each arch's line is written at once; with more, each pass appends one
    round line per arch and the last pass combines an arch's rounds into its final line (a rerun
    resumes from the round lines on disk). The kernel breakdown runs in the last pass.
    """
    total, step = len(ids) * rounds, 0
    for r in range(1, rounds + 1):
        last = r == rounds
        for i in ids:
            arch = space.arch_str(i)
            targets = []
            for j, (s, lg) in enumerate(jobs):
                if arch in finished[j]:
                    continue
                missing_kernels = last and stream == "latency" and s.kernels and arch not in lg.kernel_archs
                if rounds > 1 and (arch, r) in lg.rounds(stream) and not missing_kernels:
                    continue
                targets.append((s, lg))
            if targets:
                round_ = r if rounds > 1 else 0
                _measure_arch(space, i, targets, seed, max_wait, stream=stream, round_=round_, kernels=last, pin=pin)
            if rounds > 1 and last:
                for j, (_, lg) in enumerate(jobs):
                    got = [lg.rounds(stream).get((arch, q)) for q in range(1, rounds + 1)]
                    if arch not in finished[j] and all(got):
                        lg.append(combine_rounds(got), None, stream)
                        finished[j].add(arch)
            step += 1
            if progress:
                progress(step, total)


def combine_rounds(rows: list[dict]) -> dict:
    """One arch's final line from its round lines: statistics over every timed forward of every round."""
    times = np.concatenate([np.asarray(r["times"], dtype=np.float64) for r in rows])
    return {
        "arch": rows[0]["arch"],
        **summarise(times),
        "attempts": int(sum(r.get("attempts", 1) for r in rows)),
        "contended": any(bool(r.get("contended")) for r in rows),
        "rounds": len(rows),
        "round_medians_ms": [round(float(np.median(r["times"])), 5) for r in rows],
        "t": rows[-1].get("t"),
    }


def _measure_arch(
    space, i: int, targets, seed: int, max_wait: float, *, stream="latency", round_=0, kernels=True, pin=()
) -> None:
    """Build arch ``i`` once, time it under every ``(setting, DeviceLog)`` target and append the lines.

    ``round_`` 0: the arch's final line; ``round_`` >= 1: one round line (its timed runs).
    """
    arch = space.arch_str(i)
    model = space.build_torch(i).eval()
    onnx: dict[tuple[int, str], bytes] = {}  # (batch, precision) -> model bytes (the export has a fixed batch)
    for s, lg in targets:
        xs = _inputs(space, s, seed + i, arch)
        m = model if s.device == "cpu" else _to_cuda(model, s)
        if s.runtime == "torch":
            run = functools.partial(_time_torch, m, xs, s)
        elif s.runtime == "torch-graphs":
            run = functools.partial(_time_cuda_graph, m, xs, s)
        else:
            if (s.batch, "fp32") not in onnx:
                onnx[s.batch, "fp32"] = export_onnx(model, xs[0])
            if s.precision == "int8" and (s.batch, "int8") not in onnx:
                onnx[s.batch, "int8"] = quantize_int8(onnx[s.batch, "fp32"], xs)
            run = functools.partial(_time_ort, onnx[s.batch, s.precision], xs, s, pin)
        times, attempts, contended = guarded(run, max_wait)
        krows = None
        if kernels and stream == "latency" and s.kernels:
            krows, _, _ = guarded(
                functools.partial(kernel_breakdown, model, xs, space, arch, s.threads),
                max_wait / 4,
                key=lambda rows: sum(r[-1] for r in rows),
            )
        t = round(time.time(), 1)
        if round_:
            if krows is not None:
                lg.append_kernels(arch, krows)
            times = [round(float(x), 5) for x in times]
            lg.append_round(
                {"arch": arch, "round": round_, "times": times, "attempts": attempts, "contended": contended, "t": t}, stream
            )
        else:
            lg.append({"arch": arch, **summarise(times), "attempts": attempts, "contended": contended, "t": t}, krows, stream)


def layer_module(layer):
    """The eager-PyTorch module of one primitive layer (a kernel-sampling configuration)."""
    from torch import nn

    pad = (layer.kernel - 1) // 2
    if layer.type == "conv":
        return nn.Conv2d(layer.cin, layer.cout, layer.kernel, layer.stride, pad, groups=layer.groups, bias=layer.bias)
    if layer.type == "bn":
        return nn.BatchNorm2d(layer.cin)
    if layer.type == "relu":
        return nn.ReLU()
    if layer.type == "avgpool":
        return nn.AvgPool2d(layer.kernel, layer.stride, pad, count_include_pad=False)
    raise ProfileError(f"no single-kernel module for layer type {layer.type!r}")


def time_layer(layer, threads: int = 1, warmup: int = 5, repeats: int = 20, max_wait: float = 60.0, seed: int = 0) -> dict:
    """Time one layer alone on this CPU under eager PyTorch (the protocol of :func:`profile`).

    Returns :func:`summarise`'s fields plus ``attempts`` and ``contended`` (contention guard).
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(1, layer.cin, layer.h, layer.h, generator=g) for _ in range(ROTATE)]
    module = layer_module(layer).eval()
    s = Setting("kernel", "torch", "cpu", threads, 1, "fp32", warmup, repeats)
    times, attempts, contended = guarded(lambda: _time_torch(module, xs, s), max_wait)
    return {**summarise(times), "attempts": attempts, "contended": contended}


def _to_cuda(model, s: Setting):
    """A GPU copy in the setting's precision (the CPU model stays as built for the other settings)."""
    import copy

    m = copy.deepcopy(model).cuda()
    return m.half() if s.precision == "fp16" else m


def write_retest(lg: DeviceLog) -> dict:
    """``retest.json`` of a device folder: Spearman and median relative difference between the
    run's latencies and the retest session's, over the archs measured in both."""
    from scipy.stats import spearmanr

    first = {r["arch"]: r["latency_ms"] for r in read_jsonl(lg.latency_path, lg.log)}
    have = {r["arch"]: r["latency_ms"] for r in read_jsonl(lg.retest_path, lg.log)}
    common = [a for a in have if a in first]
    a, b = np.array([first[x] for x in common]), np.array([have[x] for x in common])
    result = {
        "archs": len(common),
        "spearman": round(float(spearmanr(a, b).statistic), 4) if len(common) > 2 else None,
        "median_abs_rel_diff": round(float(np.median(np.abs(b - a) / a)), 4) if len(common) else None,
    }
    write_text(lg.dir / "retest.json", json.dumps(result, indent=2) + "\n")
    return result


def finalize(folder: Path, log=lambda msg: None) -> None:
    """JSONL -> ``latency.parquet`` (+ ``kernels.parquet``), written atomically next to them.

    One row per arch: an arch measured twice (its kernel line was lost, so it was measured again)
    keeps its last measurement, at the position of its first.
    """
    import pyarrow as pa

    folder = Path(folder)
    latest: dict[str, dict] = {}
    for r in read_jsonl(folder / "latency.jsonl", log):
        latest[r["arch"]] = r
    rows = list(latest.values())
    if not rows:
        return
    cols = ["arch", "latency_ms", "iqr_ms", "trimmed_mean_ms", "outliers", "n", "attempts", "contended"]
    table = pa.table({c: [r.get(c) for r in rows] for c in cols})
    write_parquet(folder / "latency.parquet", table, compression="zstd")
    # a run killed between the two appends leaves a kernel line whose arch was then measured again:
    # keep the last kernel line of each arch that has a latency line, in latency order
    last = {r["arch"]: r["rows"] for r in read_jsonl(folder / "kernels.jsonl", log)}
    krows = [{"arch": r["arch"], "rows": last[r["arch"]]} for r in rows if r["arch"] in last]
    if krows:
        names = ["layer", "op", "h", "cin", "cout", "kernel", "stride", "groups", "latency_ms"]
        flat = {n: [] for n in ["arch", *names]}
        for r in krows:
            for k in r["rows"]:
                flat["arch"].append(r["arch"])
                for n, v in zip(names, k):
                    flat[n].append(v)
        ktable = pa.table({"arch": pa.array(flat["arch"]).dictionary_encode(), **{n: flat[n] for n in names}})
        write_parquet(folder / "kernels.parquet", ktable, compression="zstd")
