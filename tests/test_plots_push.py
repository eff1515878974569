"""Plots (dataset overview, prediction scatters) and the Hub push, with a fake HfApi (no network)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from latbench.cli import app
from latbench.errors import DataError, LatbenchError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    head = path.read_bytes()[:8]
    assert head == PNG_SIGNATURE, f"{path}: not a PNG ({head!r})"
    assert path.stat().st_size > 5_000, f"{path}: suspiciously small ({path.stat().st_size} bytes)"


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".")]


# ----------------------------------------------------------------------------------- plots
@pytest.mark.slow
def test_plot_dataset_writes_heatmap_and_histograms_per_space(data, tmp_path):
    from latbench.data import store
    from latbench.plots import plot_dataset

    out = tmp_path / "plots"
    paths = plot_dataset(out)
    spaces = list(store.info()["spaces"])
    assert len(spaces) == 3
    expected = {out / f"{s}-{kind}.png" for s in spaces for kind in ("correlation", "latency-hist")}
    assert set(paths) == expected and len(paths) == 6
    for p in paths:
        assert_png(p)
    assert no_temp_files(out)


def test_cluster_order_groups_correlated_devices():
    import numpy as np

    from latbench.plots import cluster_order

    # devices 0,2,4 agree with each other, 1,3 with each other: clustering must make them adjacent
    c = np.full((5, 5), 0.2)
    for group in ([0, 2, 4], [1, 3]):
        c[np.ix_(group, group)] = 0.95
    np.fill_diagonal(c, 1.0)
    order = cluster_order(c).tolist()
    assert sorted(order) == [0, 1, 2, 3, 4]
    pos = {d: i for i, d in enumerate(order)}
    assert sorted(pos[d] for d in (0, 2, 4)) in ([0, 1, 2], [2, 3, 4])


def test_plot_predictions_flops_on_hard_task(data, tmp_path):
    from latbench.methods.registry import make_method
    from latbench.plots import plot_predictions
    from latbench.tasks.spec import load_task

    paths = plot_predictions(make_method("flops"), [load_task("hard-3")], shots=10, out=tmp_path)
    assert paths == [tmp_path / "hard-3-k10.png"]
    assert_png(paths[0])
    assert no_temp_files(tmp_path)


def test_plot_failure_leaves_no_partial_png(data, tmp_path):
    from latbench.methods.base import Method
    from latbench.plots import plot_predictions
    from latbench.tasks.spec import load_task

    class Broken(Method):
        name = "broken"

        def predict(self, device, arch_ids):
            return [float("nan")] * len(arch_ids)

    with pytest.raises(LatbenchError, match="NaN"):
        plot_predictions(Broken(), [load_task("hard-3")], shots=5, out=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_data_plot(data, tmp_path):
    out = tmp_path / "cli-plots"
    res = CliRunner().invoke(app, ["data", "plot", "--out", str(out)])
    assert res.exit_code == 0, res.output
    listed = [line.strip() for line in res.output.splitlines() if line.strip()]
    assert len(listed) == 6
    for line in listed:
        assert_png(Path(line))


# ------------------------------------------------------------------------------------ push
class FakeApi:
    endpoint = "https://hub.example"

    def __init__(self, fail: BaseException | None = None):
        self.calls: list[tuple[str, tuple, dict]] = []
        self.fail = fail

    def create_repo(self, *args, **kwargs):
        self.calls.append(("create_repo", args, kwargs))
        repo_id = args[0] if args else kwargs["repo_id"]
        return f"{self.endpoint}/datasets/{repo_id}"

    def upload_folder(self, *args, **kwargs):
        self.calls.append(("upload_folder", args, kwargs))
        if self.fail is not None:
            raise self.fail
        return None


def test_push_creates_repo_then_uploads_dataset_folder(data):
    from latbench.data import store
    from latbench.data.push import push

    api = FakeApi()
    url = push("org/name", private=True, api=api)
    assert "org/name" in url
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    _, args, kw = api.calls[0]
    assert (args[0] if args else kw["repo_id"]) == "org/name"
    assert kw["repo_type"] == "dataset" and kw["private"] is True and kw["exist_ok"] is True
    _, _, kw = api.calls[1]
    assert Path(kw["folder_path"]) == store.root()
    assert kw["repo_id"] == "org/name" and kw["repo_type"] == "dataset"
    assert store.info()["dataset_version"] in kw["commit_message"]
    assert ".*" in kw["ignore_patterns"]


@pytest.mark.parametrize("bad", ["no slash here", "a/b/c", "", "org/", "/name", "org/na--me", "org/name.git"])
def test_push_rejects_bad_repo_id_before_any_call(data, bad):
    from latbench.data.push import push

    api = FakeApi()
    with pytest.raises(LatbenchError) as exc:
        push(bad, api=api)
    assert api.calls == []
    assert "\n" not in str(exc.value)


def _http_error():
    from huggingface_hub.errors import HfHubHTTPError

    response = SimpleNamespace(headers={}, request=None)
    return HfHubHTTPError("403 Forbidden: you cannot write to org/name\nRequest ID: abc\nmore detail", response=response)


@pytest.mark.parametrize("fail", [_http_error, lambda: OSError("connection reset by peer\nsecond line")])
def test_push_wraps_hub_errors_in_one_line(data, fail):
    from latbench.data.push import push

    api = FakeApi(fail=fail())
    with pytest.raises(LatbenchError) as exc:
        push("org/name", api=api)
    msg = str(exc.value)
    assert "\n" not in msg and "org/name" in msg
    assert "403" in msg or "connection reset" in msg


def test_push_without_built_dataset_raises_data_error(tmp_path, monkeypatch):
    from latbench.data import store
    from latbench.data.push import push

    monkeypatch.setenv("LATBENCH_HOME", str(tmp_path))
    store.clear_cache()
    api = FakeApi()
    try:
        with pytest.raises(DataError):
            push("org/name", api=api)
    finally:
        store.clear_cache()
    assert api.calls == []


def test_cli_push_bad_repo_id_is_one_line_error():
    res = CliRunner().invoke(app, ["data", "push", "--repo-id", "bad id"])
    assert res.exit_code == 1
    assert "error:" in res.output
    assert "Traceback" not in res.output
    assert not isinstance(res.exception, LatbenchError)  # handled by the CLI, not escaped
