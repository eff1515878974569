"""The learned baselines' ``device`` parameter and ``--device``: resolution, refusal, plumbing.

No GPU is needed: the CPU runs must equal the default to the last bit; a ``device="cuda"`` run on
a machine without one must stop with one line; and a run on torch's ``meta`` device (tensors with
shapes but no data) under :class:`SameDevice` shows that every tensor of a training step lives on
the requested device: an op that meets a CPU tensor and a meta one fails the test, as it would
fail on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clirun import run_cli
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from latbench.cli.common import set_device
from latbench.errors import LatbenchError, MethodError
from latbench.methods.fitting import torch_device
from latbench.methods.registry import resolve

#: The methods with a ``device`` parameter (torch models).
LEARNED = ("help", "brp-nas", "nasflat", "mlp-finetune", "mlp-hwparams")


_cli = run_cli


class SameDevice(TorchDispatchMode):
    """Fail any aten op whose tensor arguments sit on different devices, the way CUDA kernels do.

    The meta device alone lets some of them through (a CPU matrix times a meta one broadcasts into
    a meta ``bmm``). Allowed, as on CUDA: copies between devices, indexing with CPU indices, and
    0-dim CPU tensors (scalars).
    """

    MIXED_OK = {
        torch.ops.aten._to_copy.default,
        torch.ops.aten.copy_.default,
        torch.ops.aten.index.Tensor,
        torch.ops.aten.index_put_.default,
        torch.ops.aten.index_put.default,
        torch.ops.aten._index_put_impl_.default,
    }

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        devices = {str(t.device) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor) and t.dim() > 0}
        if len(devices) > 1 and func not in self.MIXED_OK:
            raise AssertionError(f"{func} mixes tensors on {sorted(devices)}")
        return func(*args, **kwargs)


def test_same_device_mode_catches_what_meta_lets_through():
    x, w = torch.ones(4, 3), torch.ones(1, 3, 5, device="meta")
    assert torch.matmul(x, w).device.type == "meta"  # the meta device alone does not object
    with SameDevice(), pytest.raises(AssertionError, match=r"mixes tensors on \['cpu', 'meta'\]"):
        torch.matmul(x, w)
    with SameDevice():  # what CUDA allows too
        assert w[0][torch.tensor([0, 2])].shape == (2, 5)
        assert (w + torch.tensor(2.0)).device.type == "meta"
        assert x.to("meta").device.type == "meta"


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_torch_device_resolves_names_and_auto(no_cuda):
    assert torch_device("cpu") == torch.device("cpu")
    assert torch_device(" CPU ") == torch.device("cpu")
    assert torch_device(torch.device("cpu")) == torch.device("cpu")
    assert torch_device("auto") == torch.device("cpu")
    assert torch_device("meta") == torch.device("meta")


def test_torch_device_auto_picks_a_gpu_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert torch_device("auto") == torch.device("cuda")
    assert torch_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(MethodError, match=r"device='cuda:1': this machine has 1 CUDA GPU\(s\), numbered from 0"):
        torch_device("cuda:1")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("cuda", "device='cuda': no CUDA GPU is available here"),
        ("cuda:0", "device='cuda:0': no CUDA GPU is available here"),
        ("gpu", "device='gpu' is not a torch device: use cpu, cuda, cuda:N or auto"),
        (3, "device=3 is not a torch device"),
    ],
)
def test_torch_device_refuses_what_this_machine_lacks(no_cuda, spec, message):
    with pytest.raises(MethodError, match=message):
        torch_device(spec)


def test_set_device_sets_the_parameter_where_there_is_one(no_cuda, capsys):
    chosen = [(name, resolve(name)()) for name in ("mlp-finetune", "help", "flops")]
    assert set_device(chosen, None) is None  # no --device: every method keeps its own
    assert [m.get_params().get("device") for _, m in chosen] == ["cpu", "cpu", None]
    assert set_device(chosen, "meta") == "meta"
    assert [m.get_params().get("device") for _, m in chosen] == ["meta", "meta", None]
    assert "note: flops: no `device` parameter, runs on the CPU (--device meta)" in capsys.readouterr().err
    assert set_device(chosen, "auto") == "cpu"  # resolved once, so results record what ran
    assert [m.get_params().get("device") for _, m in chosen[:2]] == ["cpu", "cpu"]
    assert capsys.readouterr().err == ""  # on the CPU every method runs where --device says
    with pytest.raises(LatbenchError, match="give the device once"):
        set_device(chosen, "cpu", {"device": "cpu"})
    with pytest.raises(MethodError, match="no CUDA GPU"):
        set_device(chosen, "cuda")


# ---- the methods ------------------------------------------------------------------------------
def _trial(task_id: str, shots: int = 10):
    from latbench.data import store
    from latbench.protocol.trial import make_trial
    from latbench.tasks.spec import load_task

    spec = load_task(task_id)
    space = store.get_space(spec.space)
    trial = make_trial(
        spec, 0, shots, store.load_latency(spec.space), reference_ids=space.reference_ids, kernels=store.load_kernels(spec.space)
    )
    return spec, space, trial


def _run(name: str, task_id: str, **params) -> dict:
    """Predictions on every target device after fit and adapt with the contract suite's settings."""
    cls = resolve(name)
    spec, space, trial = _trial(task_id)
    m = cls(**{**cls.check_params, **params}).fit(trial.source, space, trial.seed)
    out = {}
    for dev, oracle in trial.oracles.items():
        m.adapt(dev, oracle)
        out[dev] = m.predict(dev, trial.eval_ids[dev])
    return m, out


@pytest.mark.slow
@pytest.mark.parametrize("name", LEARNED)
def test_explicit_cpu_and_auto_give_the_default_results_bit_for_bit(data, no_cuda, name):
    task = "hard-3" if name != "help" else "help-fbnet"
    m0, default = _run(name, task)
    assert m0.torch_device_ == torch.device("cpu")
    for device in ("cpu", "auto"):
        m, pred = _run(name, task, device=device)
        assert m.torch_device_ == torch.device("cpu")
        assert pred.keys() == default.keys()
        for dev in default:
            assert np.array_equal(pred[dev], default[dev]), (device, dev)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, task", [(name, "help-fbnet") for name in LEARNED] + [("brp-nas", "hard-3"), ("nasflat", "hard-3")]
)
def test_meta_device_runs_the_training_step_with_every_tensor_on_it(data, name, task):
    """Up to the first read of a number back to the host (which a meta tensor cannot give), fit and
    adapt run on the meta device with no op mixing devices (:class:`SameDevice`): HELP's first
    meta-training episode, BRP-NAS's first epoch, NASFLAT's whole source training, the MLPs' whole
    source training. HELP's NB201 graphs use sparse CSR matrices, which have no meta kernels."""
    cls = resolve(name)
    spec, space, trial = _trial(task)
    m = cls(**{**cls.check_params, "device": "meta"})
    dev = spec.target[0]
    with SameDevice(), pytest.raises((RuntimeError, NotImplementedError)) as e:
        m.fit(trial.source, space, trial.seed)
        m.adapt(dev, trial.oracles[dev])
    text = str(e.value)
    assert "meta tensor" in text, text  # a host read, the only thing a meta run cannot do
    assert m.torch_device_ == torch.device("meta")
    if name == "brp-nas":  # stops in the first epoch's validation; its model is local to the training
        return
    if name == "nasflat":  # the whole source training ran; its weights stay on the device
        tensors = list(m.base_state_.values())
    elif name == "help":
        tensors = [*m.net_.parameters(), *m.infnet_.parameters(), *m.task_lr_.values()]
    else:
        tensors = [t for layer in m.layers_ for t in layer]
    assert tensors and all(t.device.type == "meta" for t in tensors)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_one_line_error(data, tmp_path):
    out = tmp_path / "res.json"
    res = _cli("eval", "-m", "mlp-finetune", "-t", "hard-3", "-k", "5", "--trials", "1", "-p", "device=cuda", "--out", out)
    assert res.exit_code == 1 and "Traceback" not in res.stderr + res.stdout
    assert (
        res.stderr.strip()
        .splitlines()[-1]
        .startswith("error: method 'mlp-finetune' on task hard-3 trial 0 failed: device='cuda': no CUDA GPU is available here")
    ), res.stderr
    assert not out.exists()
    res = _cli("eval", "-m", "help", "-t", "hard-3", "--trials", "1", "--device", "cuda")
    assert res.exit_code == 1 and "Traceback" not in res.stderr + res.stdout
    assert res.stderr.strip().splitlines() == [res.stderr.strip().splitlines()[-1]]
    assert res.stderr.startswith("error: device='cuda': no CUDA GPU is available here"), res.stderr
    res = _cli("eval", "-m", "help", "-t", "hard-3", "--device", "cpu", "-p", "device=cpu")
    assert res.exit_code == 1 and "give the device once" in res.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_board_baselines_refuse_a_missing_gpu_before_any_work(data, tmp_path, monkeypatch):
    board = tmp_path / "board"
    monkeypatch.setenv("LATBENCH_LEADERBOARD", str(board))
    res = _cli("leaderboard", "baselines", "-m", "help", "--suite", "literature", "--device", "cuda")
    assert res.exit_code == 1 and "Traceback" not in res.stderr + res.stdout
    assert res.stderr.startswith("error: device='cuda': no CUDA GPU is available here"), res.stderr
    assert "sweep:" not in res.stderr + res.stdout  # refused before planning any unit
    assert not (board / "entries").exists() or not any((board / "entries").iterdir())


def test_device_flag_is_recorded_as_a_parameter(data, no_cuda, tmp_path):
    """``--device auto`` is resolved before the run: the results say which device ran."""
    out = tmp_path / "res.json"
    res = _cli(
        "eval", "-m", "mlp-finetune", "-t", "hard-3", "-k", "5", "--trials", "1", "--device", "auto", "--out", out,
        "-p", "epochs=1", "-p", "hidden_units=16", "-p", "finetune_epochs=2",
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    from latbench.eval.results import EvalResult

    assert EvalResult.read(out).method_params["device"] == "cpu"
