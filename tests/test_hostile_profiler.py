"""Hostile input to `latbench profile`'s output folder: corrupt JSONL lines, broken meta.json, two runs at once, bad names.

The promise (issue #18): a measured line is never lost silently. A corrupt line in the middle of
``latency.jsonl`` / ``kernels.jsonl`` is reported with its line number and set aside in
``*.corrupt.jsonl`` while every valid line stays; only a torn last line (no newline: a run killed
mid-write) is dropped, with a note. What cannot be repaired (meta.json, a folder another run is
writing) is a one-line ``ProfileError`` (``error: ...`` from the CLI) with nothing changed on disk.

Most tests measure a tiny NB201 space built from arch strings (no dataset needed); the CLI tests
use the session dataset.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from clirun import run_cli
from hostile import hold

from latbench.locks import FileLock
from latbench.measure import profiler
from latbench.spaces import space_class

FAST = dict(warmup=1, repeats=3)
DEV = "x-torch-t1-bs1-fp32"


@pytest.fixture(scope="module")
def tiny():
    """14 NB201 archs (3 reference archs first), cheap to build and time; runs measure 12 of them."""
    cls = space_class("nb201")
    archs = cls.all_archs()[::1001][:14]
    space = cls(archs)
    space.reference_ids = np.arange(3)
    return space


def _settings(runtime="torch"):
    return [profiler.Setting("nb201", runtime, "cpu", 1, 1, "fp32", **FAST)]


def _run(space, out, n=12, **kw):
    msgs: list[str] = []
    report = profiler.profile(space, _settings(), out, n, name_prefix="x", max_wait=0, log=msgs.append, **kw)
    return report, msgs


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, but the lock files' (a run that takes a lock writes its pid there, then fails)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != profiler.LOCK_NAME
    }


def _one_line(msg: str) -> None:
    assert msg and "\n" not in msg.strip() and "Traceback" not in msg, msg


@pytest.fixture()
def finished(tiny, tmp_path):
    """A finished run of the tiny space: (out, device folder)."""
    out = tmp_path / "out"
    _run(tiny, out)
    return out, out / "nb201" / DEV


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# ------------------------------------------------------------- 1. corrupt lines are kept aside, never lost
@pytest.mark.parametrize(
    "garbage",
    [
        b'{"arch": "|nor_conv_3x3~0|+|nor_co\x00\x00\x00 garbage',  # bytes of a broken disk block
        b"\xff\xfe not utf-8 \xc3\x28",
        b"[1, 2, 3]",  # valid JSON, not an object
        b'"a string"',
        b"42",
        b"null",
        b'{"latency_ms": 1.0}',  # an object without an arch
        b'{"arch": "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "latency_ms": "fast"}',
        b'{"arch": "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "latency_ms": NaN}',
        b'{"arch": "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "latency_ms": -1}',
        b'{"arch": "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "latency_ms": 1.0, "n": "three"}',
        b"[" * 100_000,  # nesting deep enough to exhaust the parser's recursion
    ],
)
@pytest.mark.slow
def test_corrupt_middle_latency_line_is_set_aside_and_every_valid_line_kept(tiny, finished, garbage):
    out, folder = finished
    before = _lines(folder / "latency.jsonl")
    victim = json.loads(before[4])["arch"]
    hurt = before[:4] + [garbage + b"\n"] + before[5:]
    (folder / "latency.jsonl").write_bytes(b"".join(hurt))
    report, msgs = _run(tiny, out)
    assert report.measured == 1 and report.skipped == 11  # only the arch of the corrupt line, not the ones after it
    after = _lines(folder / "latency.jsonl")
    assert after[:11] == before[:4] + before[5:]  # every valid line, byte for byte, in order
    assert json.loads(after[11])["arch"] == victim and len(after) == 12
    aside = [json.loads(x) for x in _lines(folder / "latency.corrupt.jsonl")]
    assert aside == [{"line": 5, "reason": aside[0]["reason"], "text": garbage.decode("utf-8", "backslashreplace")}]
    warnings = [m for m in msgs if m.startswith("warning:")]
    assert len(warnings) == 1 and "line 5" in warnings[0] and "latency.corrupt.jsonl" in warnings[0]
    _one_line(warnings[0])
    lat = pq.read_table(folder / "latency.parquet").to_pandas()
    planned = [tiny.arch_str(i) for i in profiler.plan_archs(tiny, 12)]
    assert sorted(lat["arch"]) == sorted(planned)  # one row per arch


def test_corrupt_kernel_line_is_set_aside_and_its_arch_measured_again(tiny, finished):
    out, folder = finished
    klines = _lines(folder / "kernels.jsonl")
    victim = json.loads(klines[6])["arch"]
    bad = b'{"arch": "' + victim.encode() + b'", "rows": [[1, 2]]}\n'
    (folder / "kernels.jsonl").write_bytes(b"".join(klines[:6] + [bad] + klines[7:]))
    before_lat = _lines(folder / "latency.jsonl")
    report, msgs = _run(tiny, out)
    assert report.measured == 1  # the kernel breakdown of that arch is measured again, nothing else
    assert _lines(folder / "kernels.jsonl")[:11] == klines[:6] + klines[7:]
    assert _lines(folder / "latency.jsonl")[:12] == before_lat  # its old latency line stays; the new one follows
    assert json.loads(_lines(folder / "kernels.corrupt.jsonl")[0])["line"] == 7
    assert any("kernels.corrupt.jsonl" in m and "line 7" in m for m in msgs)
    lat = pq.read_table(folder / "latency.parquet").to_pandas()
    kern = pq.read_table(folder / "kernels.parquet").to_pandas()
    assert lat["arch"].is_unique and len(lat) == 12  # the arch measured twice keeps one row: its last measurement
    assert lat.set_index("arch").loc[victim, "latency_ms"] == json.loads(_lines(folder / "latency.jsonl")[12])["latency_ms"]
    assert set(kern["arch"]) == set(lat["arch"])  # every arch has its breakdown again


def test_many_corrupt_lines_make_one_report_line(tiny, finished):
    out, folder = finished
    lines = _lines(folder / "latency.jsonl")
    (folder / "latency.jsonl").write_bytes(b"".join(x if i % 2 else b"garbage\n" for i, x in enumerate(lines)))
    report, msgs = _run(tiny, out)
    assert report.measured == 6
    warnings = [m for m in msgs if m.startswith("warning:")]
    assert len(warnings) == 1 and "6 corrupt line(s)" in warnings[0] and ", ..." in warnings[0]
    assert [json.loads(x)["line"] for x in _lines(folder / "latency.corrupt.jsonl")] == [1, 3, 5, 7, 9, 11]


def test_torn_last_line_is_dropped_with_a_note(tiny, finished):
    out, folder = finished
    before = (folder / "latency.jsonl").read_bytes()
    with open(folder / "latency.jsonl", "ab") as f:
        f.write(b'{"arch": "|nor_conv_3x3~0|+|')
    assert profiler.read_jsonl(folder / "latency.jsonl", log=(notes := []).append) and len(notes) == 1
    assert notes[0].startswith("note:") and "line 13" in notes[0]
    assert (folder / "latency.jsonl").read_bytes() == before
    assert not (folder / "latency.corrupt.jsonl").exists()


def test_whole_last_record_without_newline_is_kept(tiny, finished):
    out, folder = finished
    data = (folder / "latency.jsonl").read_bytes()
    (folder / "latency.jsonl").write_bytes(data[:-1])  # the crash came after the record, before its newline
    report, msgs = _run(tiny, out)
    assert report.measured == 0 and (folder / "latency.jsonl").read_bytes() == data
    assert not [m for m in msgs if m.startswith(("warning:", "note:"))]


def test_blank_lines_and_crlf_do_not_lose_records(tiny, finished):
    out, folder = finished
    lines = _lines(folder / "latency.jsonl")
    crlf = lines[3].replace(b"\n", b"\r\n")
    (folder / "latency.jsonl").write_bytes(b"\n".join([lines[0], b"", *lines[1:3]]) + crlf + b"".join(lines[4:]))
    report, _ = _run(tiny, out)
    assert report.measured == 0  # a blank line holds nothing; a CRLF record is still a record


def test_corrupt_retest_line_is_set_aside(tiny, finished):
    out, folder = finished
    _run(tiny, out, retest=4)
    lines = _lines(folder / "retest.jsonl")
    (folder / "retest.jsonl").write_bytes(lines[0] + b"}{\n" + b"".join(lines[1:]))
    _, msgs = _run(tiny, out, retest=4)
    assert any("retest.corrupt.jsonl" in m for m in msgs)
    assert json.loads((folder / "retest.json").read_text())["archs"] == 4


def test_corrupt_round_line_is_set_aside_and_its_round_measured_again(tiny, tmp_path):
    """Interleaved rounds: a corrupt line of rounds.jsonl is kept aside; that (arch, round) is timed again."""
    out = tmp_path / "out"
    settings = _settings()
    profiler.profile(tiny, settings, out, 4, name_prefix="x", max_wait=0, rounds=2)
    folder = out / "nb201" / DEV
    lines = _lines(folder / "rounds.jsonl")
    latency = _lines(folder / "latency.jsonl")
    (folder / "latency.jsonl").write_bytes(b"".join(latency[:-1]))  # the last arch is not finished
    last = json.loads(latency[-1])["arch"]
    bad = next(i for i, l in enumerate(lines) if json.loads(l)["arch"] == last and json.loads(l)["round"] == 1)
    (folder / "rounds.jsonl").write_bytes(b"".join(lines[:bad] + [b'{"arch": "x", "round": 0}\n'] + lines[bad + 1 :]))
    msgs: list[str] = []
    report = profiler.profile(tiny, settings, out, 4, name_prefix="x", max_wait=0, rounds=2, log=msgs.append)
    assert report.measured == 1
    assert any("rounds.corrupt.jsonl" in m and f"line {bad + 1}" in m for m in msgs), msgs
    aside = [json.loads(l) for l in _lines(folder / "rounds.corrupt.jsonl")]
    assert aside[0]["reason"] == '"round" is not an integer >= 1'
    rows = profiler.read_jsonl(folder / "rounds.jsonl")
    assert sorted(r["round"] for r in rows if r["arch"] == last) == [1, 2]  # round 1 timed again, round 2 kept
    assert [r["arch"] for r in profiler.read_jsonl(folder / "latency.jsonl")][-1] == last


# ------------------------------------------------------------------------ 2. meta.json: one-line errors
@pytest.mark.parametrize(
    "content, needle",
    [
        (b'{"device": "x-torch-t1-bs1-fp32", "setting": {', "not valid JSON (line 1"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object, found a JSON array"),
        (b'"just text"', "found a JSON string"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),
    ],
)
@pytest.mark.slow
def test_broken_meta_json_is_one_line_error_and_nothing_changes(tiny, finished, content, needle):
    out, folder = finished
    (folder / "meta.json").write_bytes(content)
    before = _snapshot(out)
    with pytest.raises(profiler.ProfileError) as e:
        _run(tiny, out)
    _one_line(str(e.value))
    assert needle in str(e.value) and "meta.json" in str(e.value)
    assert _snapshot(out) == before


def test_meta_json_that_is_a_folder_is_one_line_error(tiny, finished):
    out, folder = finished
    (folder / "meta.json").unlink()
    (folder / "meta.json").mkdir()
    before = _snapshot(out)
    with pytest.raises(profiler.ProfileError, match="meta.json: unreadable") as e:
        _run(tiny, out)
    _one_line(str(e.value))
    assert _snapshot(out) == before


def test_measurements_without_meta_json_are_not_adopted(tiny, finished):
    out, folder = finished
    (folder / "meta.json").unlink()
    before = _snapshot(out)
    with pytest.raises(profiler.ProfileError, match="latency.jsonl without meta.json"):
        _run(tiny, out)
    assert _snapshot(out) == before


# -------------------------------------------------------------------------- 3. one run per folder: a lock
def test_second_run_on_the_same_folder_is_refused(tiny, finished):
    out, folder = finished
    holder = hold(folder / profiler.LOCK_NAME)
    try:
        before = _snapshot(out)
        with pytest.raises(profiler.ProfileError) as e:
            _run(tiny, out, n=13)
        _one_line(str(e.value))
        assert f"pid {holder.pid}" in str(e.value) and "another `latbench profile`" in str(e.value)
        assert _snapshot(out) == before
    finally:
        holder.kill()
        holder.wait()
    report, _ = _run(tiny, out, n=12)  # the holder is gone: its lock with it
    assert report.measured == 0


def test_refused_run_leaves_no_new_folder(tiny, tmp_path):
    """Two devices, the second one busy: the first device's folder, new, is not left behind."""
    out = tmp_path / "out"
    busy = out / "nb201" / "x-ort-t1-bs1-fp32"
    busy.mkdir(parents=True)
    holder = hold(busy / profiler.LOCK_NAME)
    try:
        before = _snapshot(out)
        settings = [
            profiler.Setting("nb201", "torch", "cpu", 1, 1, "fp32", **FAST),
            profiler.Setting("nb201", "onnxruntime", "cpu", 1, 1, "fp32", **FAST),
        ]
        with pytest.raises(profiler.ProfileError, match="another `latbench profile`"):
            profiler.profile(tiny, settings, out, 12, name_prefix="x", max_wait=0)
        assert _snapshot(out) == before and not (out / "nb201" / DEV).exists()
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_of_a_dead_run_does_not_block(tiny, finished):
    out, folder = finished
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (folder / profiler.LOCK_NAME).write_text(dead.stdout)  # what a killed run leaves: the file, not the lock
    report, _ = _run(tiny, out, n=13)
    assert report.measured == 1


def test_lock_is_released_after_the_run_and_after_an_error(tiny, finished, monkeypatch):
    out, folder = finished
    with FileLock(folder / profiler.LOCK_NAME):
        pass  # free after a finished run
    monkeypatch.setattr(profiler, "_measure_arch", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        _run(tiny, out, n=13)
    with FileLock(folder / profiler.LOCK_NAME):
        pass  # free after a failed run


@pytest.mark.slow
def test_two_concurrent_profile_processes_one_is_refused(tiny, tmp_path):
    """Two real runs on one --out: while the first measures, the second stops with the lock error."""
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import time, numpy as np
        from latbench.measure import profiler
        from latbench.spaces import space_class
        cls = space_class("nb201"); sp = cls(cls.all_archs()[::1001][:14]); sp.reference_ids = np.arange(3)
        real = profiler._measure_arch
        def slow(*a, **k):
            print("measuring", flush=True); time.sleep(0.5); real(*a, **k)
        profiler._measure_arch = slow
        profiler.profile(sp, [profiler.Setting("nb201", "torch", "cpu", 1, 1, "fp32", warmup=1, repeats=3)],
                         {str(out)!r}, 12, name_prefix="x", max_wait=0)
    """)
    first = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "measuring"
        with pytest.raises(profiler.ProfileError, match=f"pid {first.pid}"):
            _run(tiny, out)
    finally:
        first.communicate(timeout=300)
    assert first.returncode == 0
    rows = profiler.read_jsonl(out / "nb201" / DEV / "latency.jsonl")
    assert len(rows) == 12 and len({r["arch"] for r in rows}) == 12  # the first run's data, whole


# ------------------------------------------------------------------------------- 4. names, settings
@pytest.mark.parametrize("name", ["../x", "/tmp/abs", "<img src=x onerror=alert(1)>", "My Lab", ".hidden", "a/b", ""])
def test_hostile_name_prefix_is_refused_before_writing(tiny, tmp_path, name):
    out = tmp_path / "out"
    with pytest.raises(profiler.ProfileError, match="not a valid name") as e:
        profiler.profile(tiny, _settings(), out, 12, name_prefix=name, max_wait=0)
    _one_line(str(e.value))
    assert not out.exists() and not (tmp_path / "x").exists()


def test_repeated_setting_is_one_device_not_a_self_lock(tiny, tmp_path):
    report = profiler.profile(tiny, _settings() * 2, tmp_path, 12, name_prefix="x", max_wait=0)
    assert report.devices == [DEV]


def test_gpu_without_a_model_pattern_still_gets_a_valid_name():
    assert profiler.hardware_slug({"gpu_model": "???"}, "cuda") == "gpu"


# ------------------------------------------------------------------------------------------- 5. CLI
def _cli(*args):
    return run_cli(
        "profile", "--space", "nb201", "--archs", "10", "--warmup", "1", "--repeats", "3", "--max-wait", "0", "--name", "x", *args
    )


def _cli_error(res) -> str:
    err = res.stderr.strip()
    assert res.exit_code == 1 and err.startswith("error: ") and "\n" not in err and "Traceback" not in err, (res.exit_code, err)
    return err


@pytest.mark.slow
def test_cli_broken_meta_json_is_error_line(data, tmp_path):
    out = tmp_path / "out"
    assert _cli("--out", str(out)).exit_code == 0
    meta = out / "nb201" / DEV / "meta.json"
    meta.write_text("{not json")
    before = _snapshot(out)
    err = _cli_error(_cli("--out", str(out)))
    assert "meta.json: not valid JSON" in err
    assert _snapshot(out) == before


def test_cli_second_run_is_refused_with_error_line(data, tmp_path):
    out = tmp_path / "out"
    folder = out / "nb201" / DEV
    folder.mkdir(parents=True)
    holder = hold(folder / profiler.LOCK_NAME)
    try:
        err = _cli_error(_cli("--out", str(out)))
        assert f"pid {holder.pid}" in err
        assert sorted(p.name for p in folder.iterdir()) == [profiler.LOCK_NAME]
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_cli_corrupt_line_is_reported_as_one_warning_line(data, tmp_path):
    out = tmp_path / "out"
    assert _cli("--out", str(out)).exit_code == 0
    jsonl = out / "nb201" / DEV / "latency.jsonl"
    lines = _lines(jsonl)
    jsonl.write_bytes(b"".join(lines[:2] + [b"[1, 2]\n"] + lines[3:]))
    res = _cli("--out", str(out))
    assert res.exit_code == 0, res.stderr
    warnings = [x for x in res.stderr.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 1 and "line 3" in warnings[0] and "a JSON array" in warnings[0]
    assert "measured 1 archs (9 already there)" in res.stdout


@pytest.mark.parametrize("name", ["../x", "<img src=x onerror=alert(1)>"])
def test_cli_hostile_name_is_error_line(data, tmp_path, name):
    out = tmp_path / "out"
    res = _cli("--out", str(out), "--name", name)
    assert "not a valid name" in _cli_error(res)
    assert not out.exists()


def test_lock_file_is_never_in_the_registered_copy(tiny, finished, tmp_path, monkeypatch):
    from latbench.data import measured

    out, folder = finished
    assert (folder / profiler.LOCK_NAME).exists()
    monkeypatch.setenv("LATBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LATBENCH_MEASURED", str(tmp_path / "no-committed"))
    target = measured.add_source(out, "mine")
    assert not (target / "nb201" / DEV / profiler.LOCK_NAME).exists()
    assert sorted(p.name for p in (target / "nb201" / DEV).iterdir()) == ["kernels.parquet", "latency.parquet", "meta.json"]
