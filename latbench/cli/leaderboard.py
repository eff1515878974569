"""``latbench leaderboard ...``: validate, store, verify and render entries; run the built-ins onto the board.

``verify`` re-runs an entry in a child process (``python -m latbench.cli leaderboard rerun-job``,
hidden) started in an empty temporary folder -- so nothing in the caller's working directory can be
imported by accident -- and stopped after ``--timeout`` minutes; only when every metric of that
fresh run matches does it record the entry in the board's verification ledger
(:mod:`latbench.leaderboard.board` explains the trust model).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

import typer

from latbench.cli.common import DEVICE_HELP, console, device_hardware, err_console, friendly, set_device
from latbench.cli.evaluate import run_suite
from latbench.cli.sweep import CHECKPOINT_HELP, run_sweep
from latbench.errors import LatbenchError

#: ``verify --timeout`` default, minutes: the slowest built-ins take hours for a whole suite on a laptop-class CPU.
VERIFY_TIMEOUT_MIN = 24 * 60

board_app = typer.Typer(no_args_is_help=True, help="Validate, store, verify and render leaderboard entries.")


@board_app.callback()
def board_options(
    ctx: typer.Context,
    board: Path | None = typer.Option(
        None,
        "--board",
        envvar="LATBENCH_LEADERBOARD",
        help="The board folder (entries/, README.md, site/). Default: the checkout's leaderboard/, or, installed "
        "from a wheel, the user data dir (e.g. ~/.local/share/latbench/leaderboard).",
    ),
):
    """Validate, store, verify and render leaderboard entries."""
    from latbench import paths

    if board is not None:  # for this command only: torn down with its click context
        ctx.with_resource(paths.board_folder(board))


@board_app.command("add")
@friendly
def board_add(
    entries: list[Path] = typer.Argument(..., metavar="ENTRY...", help="Entry files (JSON)."),
    check: bool = typer.Option(
        False,
        "--check",
        help="Validate only (what add checks but duplicates and status), store nothing: CI on committed entries.",
    ),
):
    """Validate the entries and store them under leaderboard/entries/: all of them, or, if one fails, none."""
    from latbench.leaderboard import board as lb

    if check:
        for entry in entries:
            lb.validate_file(entry)
            console.print(f"valid {entry}", highlight=False, soft_wrap=True)
        return
    for path in lb.add_all(entries):
        console.print(f"added {path}", highlight=False, soft_wrap=True)


@board_app.command("render")
@friendly
def board_render():
    """Write leaderboard/README.md, leaderboard/site/ (page and charts) from the stored entries; when the board is the checkout's own leaderboard/, also README.md's board excerpt and docs/results.md's board tables."""
    from latbench import paths
    from latbench.leaderboard import board as lb
    from latbench.leaderboard import site
    from latbench.plots import plot_board

    folder = paths.leaderboard_dir()
    if not lb.entries_dir().is_dir():  # a mistyped --board must not grow a new, empty board
        raise LatbenchError(f"no board at {folder}: it has no entries/ folder (`latbench leaderboard add` makes one)")
    entries = lb.list_entries()
    for p in [*site.render(entries, folder), *plot_board(entries, folder / "site")]:
        console.print(str(p))


@board_app.command("compare")
@friendly
def board_compare(
    method: str = typer.Argument(..., help="A method name on the board (or an entry id, when it has several entries)."),
    suite: str = typer.Option("main", help="The suite whose entries are compared."),
    shots: list[int] = typer.Option([5, 10, 20], "--shots", "-k", help="Shot counts to compare at (repeat for several)."),
):
    """Is METHOD better than each other method on the board? Paired per task, Wilcoxon + Holm.

    More powerful than the board's all-pairs ranks for this one question (docs: Metrics and ranking).
    """
    from rich.table import Table
    from rich.text import Text

    from latbench.leaderboard import board as lb
    from latbench.leaderboard import comparison

    entries = lb.list_entries()
    control = comparison.pick_control(entries, method, suite)
    for k in shots:
        c = comparison.compare(entries, control, k)
        table = Table(
            "method",
            "Spearman",
            "difference",
            "95 % CI",
            "units won",
            "p",
            "p (Holm)",
            "this method is",
            title=Text(
                f"{c.control} ({c.control_spearman:.3f}) vs the {c.suite} suite, k = {k}: {c.n_tasks} tasks, "
                f"{c.n_units} (task, trial) units, α = {c.alpha:g}"
            ),
        )
        for r in c.rows:
            table.add_row(
                Text(r["method"]),
                f"{r['spearman']:.3f}",
                f"{r['diff']:+.3f}",
                f"[{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}]",
                f"{r['wins']:.2f}",
                f"{r['p']:.2g}",
                f"{r['p_holm']:.2g}",
                r["verdict"],
            )
        console.print(table)
    console.print(
        "difference: mean over tasks of (this method - the other) Spearman; CI: tasks resampled; p: Wilcoxon "
        "signed-rank test on the per-task differences, Holm-adjusted over the methods compared",
        style="dim",
    )


@board_app.command("verify")
@friendly
def board_verify(
    entry_id: str = typer.Argument(..., help="A stored entry's id: its file name in entries/ without .json."),
    allow_import: list[str] = typer.Option(
        [],
        "--allow-import",
        metavar="MODULE",
        help="Allow importing and running MODULE (and modules inside it) for an entry whose code_ref is not a "
        "registered method. Registered methods (built-ins, installed plug-ins) never need this.",
    ),
    timeout: float = typer.Option(
        VERIFY_TIMEOUT_MIN, "--timeout", help="Minutes the re-run may take; then it is stopped and nothing changes."
    ),
    upgrade: bool = typer.Option(
        False,
        "--upgrade",
        help="For an entry of an older entry schema: once it reproduces, store the re-run (with the metrics added "
        "since) as a verified entry in its place.",
    ),
    workers: int = typer.Option(1, help="Processes re-running (task, trial) units in parallel."),
    time_budget: float | None = typer.Option(
        None,
        "--time-budget",
        help="Minutes after which no new unit starts. The units re-run so far are kept (under LATBENCH_HOME/verify/) "
        "and the same command continues from them: an entry too slow to re-run at once is verified over several "
        "runs, every unit still re-run by verify.",
    ),
):
    """Re-run an entry's method in a fresh process and check that every metric matches; marks it verified."""
    import shutil

    from latbench.eval import sweep
    from latbench.leaderboard import board as lb

    if not timeout > 0:
        raise LatbenchError(f"--timeout must be > 0 minutes (got {timeout:g})")
    sweep.check_executor(workers, None)
    path = lb.stored_entry_path(entry_id)
    entry = lb.load_entry(path)
    lb.validate(entry)
    spec = lb.verify_spec(entry, allow_import)
    if lb.registered_spec(entry) is None:
        err_console.print(
            f"warning: {path.stem}: {spec} is not a registered method; importing and running it as allowed by --allow-import",
            highlight=False,
            soft_wrap=True,
        )
    units = verify_units_dir(path.stem, entry) if time_budget is not None else None
    if units is not None:
        for old in stale_verify_units(path.stem, units):
            shutil.rmtree(old, ignore_errors=True)
            err_console.print(f"removed {old}: units of an earlier version of {path.stem}", highlight=False, soft_wrap=True)
    sweep.check_budget(None if time_budget is None else time_budget * 60, units, None)
    fresh = rerun(entry, spec, timeout * 60, workers=workers, units=units, time_budget=time_budget)
    try:
        lb.check_same(entry, fresh)
        if lb.content_sha256(lb.load_entry(path)) != lb.content_sha256(entry):
            raise LatbenchError(f"{path}: changed while it was being verified; nothing recorded")
    finally:  # a complete re-run is final, whatever it found: the next verify starts afresh
        if units is not None:
            shutil.rmtree(units, ignore_errors=True)
    if upgrade and entry.schema_version != lb.ENTRY_SCHEMA_VERSION:
        new = lb.upgraded_entry(entry, fresh)
        lb.validate(new)
        new_path = lb.store_entry(new, folder=path.parent, supersedes=[path])
        lb.record_verification(new, new_path.stem, by="leaderboard verify --upgrade", folder=path.parent)
        lb.remove_entry(path)
        console.print(
            f"{path.stem}: verified (all metrics reproduce); stored as {new_path.stem} (entry schema "
            f"{new.schema_version}), {path.stem} removed"
        )
        return
    lb.mark_verified(path, entry)
    console.print(
        f"{path.stem}: verified (all metrics reproduce) by re-running {spec}; `latbench leaderboard render` shows it",
        highlight=False,
        soft_wrap=True,
    )


def verify_units_dir(entry_id: str, entry) -> Path:
    """Where a ``verify --time-budget`` keeps the units it has re-run: one folder per entry id and
    entry content, in this user's latbench home (never the board, never a folder a submitter supplies)."""
    from latbench import paths
    from latbench.leaderboard import board as lb

    return paths.home() / "verify" / f"{entry_id}-{lb.content_sha256(entry)[:16]}"


def stale_verify_units(entry_id: str, current: Path) -> list[Path]:
    """The other unit folders of ``entry_id`` (kept for content the entry no longer has): no verify
    would load them again, so a sliced verify of the entry's current content removes them."""
    same_entry = re.compile(re.escape(entry_id) + r"-[0-9a-f]{16}")
    if not current.parent.is_dir():
        return []
    return sorted(p for p in current.parent.iterdir() if p != current and p.is_dir() and same_entry.fullmatch(p.name))


def rerun(entry, spec: str, timeout: float, *, workers: int = 1, units: Path | None = None, time_budget: float | None = None):
    """The entry's suite re-run with ``spec`` in a child process (see the module docstring); its
    EvalResult. LatbenchError when it fails or takes more than ``timeout`` seconds (it is killed).

    With ``units`` (a folder) and ``time_budget`` (minutes), the child keeps each re-run unit there
    and starts none after the budget; a later call continues from them."""
    from latbench import paths
    from latbench.eval.executors import NOTHING_WRITTEN
    from latbench.eval.results import EvalResult

    with tempfile.TemporaryDirectory(prefix="latbench-verify-") as tmp:
        job, out, cwd = Path(tmp) / "job.json", Path(tmp) / "result.json", Path(tmp) / "cwd"
        cwd.mkdir()
        job.write_text(
            json.dumps(
                {
                    "spec": spec,
                    "suite": entry.suite,
                    "params": entry.method.params,
                    "workers": workers,
                    "units": None if units is None else str(units),
                    "time_budget": None if time_budget is None else time_budget * 60,
                }
            )
        )
        env = {
            **os.environ,
            "LATBENCH_HOME": str(paths.home()),
            "LATBENCH_LEADERBOARD": str(paths.leaderboard_dir()),
            "LATBENCH_TASKS": str(paths.tasks_dir()),
            "PYTHONSAFEPATH": "1",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "latbench.cli", "leaderboard", "rerun-job", str(job), str(out)],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        errors: list[str] = []
        relay = threading.Thread(target=_relay, args=(proc.stderr, errors), daemon=True)
        relay.start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LatbenchError(
                f"verify: the re-run of {spec} did not finish within {timeout / 60:g} min (--timeout); "
                "it was stopped and nothing changed"
            ) from None
        finally:
            if proc.poll() is None:
                _kill(proc)
            relay.join(timeout=5)
        if proc.returncode != 0:
            why = errors[-1] if errors else f"exit code {proc.returncode}"
            if units is not None and why.startswith("time budget"):
                raise LatbenchError(f"verify: {why.replace(f'({NOTHING_WRITTEN})', '(nothing recorded yet)')}")
            raise LatbenchError(f"verify: the re-run of {spec} failed ({why}); nothing changed")
        try:
            return EvalResult.read(out)
        except (OSError, ValueError) as e:
            raise LatbenchError(
                f"verify: the re-run of {spec} left no readable result ({type(e).__name__}); nothing changed"
            ) from None


def _relay(stream, errors: list[str]) -> None:
    """Pass the child's progress lines on to stderr; keep its ``error:`` lines for the one-line message."""
    for line in stream:
        if line.startswith("error: "):
            errors.append(line[len("error: ") :].strip())
        else:
            err_console.print(line.rstrip("\n"), highlight=False, soft_wrap=True)


def _kill(proc: subprocess.Popen) -> None:
    """Stop the child and everything it started (its own session)."""
    import signal

    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


@board_app.command("rerun-job", hidden=True)
@friendly
def board_rerun_job(job: Path, out: Path):
    """Internal: the child process of `verify`. Runs one job file's method on its suite, writes the EvalResult."""
    from latbench.leaderboard import board as lb

    spec = json.loads(job.read_text())
    units = spec.get("units")
    if units is not None and Path(units).is_dir():
        from latbench.eval import checkpoints

        _, stale = checkpoints.prune(Path(units))
        if stale:
            err_console.print(
                f"{units}: {len(stale)} kept unit(s) were computed by other code (latbench or the method changed "
                "since): removed, they run again",
                highlight=False,
                soft_wrap=True,
            )
    params = lb.verify_params(spec["params"], spec["spec"])
    check_contract(spec["spec"], spec["suite"], params)
    fresh = run_suite(
        spec["spec"],
        spec["suite"],
        params,
        workers=spec.get("workers", 1),
        checkpoint=None if units is None else Path(units),
        time_budget=spec.get("time_budget"),
    )
    fresh.write(out)


def check_contract(spec: str, suite: str, params: dict) -> None:
    """The method's contract checks (``latbench.check_method``) at the entry's parameters, on the
    suite's first task at its smallest k: a method that measures more than k archs or reads target
    latencies it did not measure is refused before its numbers are re-run."""
    from latbench.eval.checks import check_method
    from latbench.leaderboard import board as lb
    from latbench.methods import registry

    task = lb.suite_tasks(suite)[0].id
    shots = min(lb.SUITE_SHOTS)
    err_console.print(f"contract checks of {spec} on {task} at k = {shots}", highlight=False, soft_wrap=True)
    check_method(registry.resolve(spec), task=task, shots=shots, params=params)


@board_app.command("baselines")
@friendly
def board_baselines(
    methods: list[str] = typer.Option([], "--method", "-m", help="Only these methods (default: all built-ins)."),
    suite: str = typer.Option("main"),
    workers: int = typer.Option(1, help="Processes running (method, task, trial) units in parallel (1: in this process)."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help=CHECKPOINT_HELP),
    time_budget: float | None = typer.Option(
        None,
        "--time-budget",
        help="Minutes after which no new unit starts; the running units finish and are kept. Without --checkpoint "
        "they are kept in LATBENCH_HOME/baselines/ and the same command continues from them: a board too slow to "
        "run at once is built over several runs and still stored verified, every unit run by this command.",
    ),
    device: str | None = typer.Option(None, "--device", help=DEVICE_HELP),
    replace: bool = typer.Option(
        False,
        "--replace",
        help="After storing each new entry, remove that method's earlier entries on this suite (and their "
        "verification records), so the board keeps one entry per (method, suite).",
    ),
):
    """Run built-in baselines on a suite and store them; verified when every unit ran in this command.

    With --checkpoint, a method any of whose units were loaded from the folder (not run now) is
    stored unverified, and the command says so: `leaderboard verify` can re-run it. With
    --time-budget alone, the units are kept in this user's latbench home (like `verify
    --time-budget`), so units loaded from there were run by this command too. Without --replace, a
    method already on the board for this suite gets a second entry.
    """
    import shutil

    from latbench.eval import sweep
    from latbench.leaderboard import board as lb
    from latbench.methods import registry as methods_mod

    names = methods or sorted(methods_mod.builtin_methods())
    sweep.check_executor(workers, None)
    budget = None if time_budget is None else time_budget * 60
    own_units = baselines_units_dir(suite, names) if budget is not None and checkpoint is None else None
    if own_units is not None:
        checkpoint = own_units
    sweep.check_budget(budget, checkpoint, None)
    chosen = sweep.make_methods(names, {})
    device = set_device(chosen, device)
    tasks = lb.suite_tasks(suite)
    ran: Counter = Counter()
    results = run_sweep(chosen, tasks, list(lb.SUITE_SHOTS), lb.SUITE_TRIALS, workers, None, checkpoint, budget, ran=ran)
    hardware = f"latbench CI-class machine ({os.cpu_count()} CPU cores{device_hardware(device)})"
    entries = lb.entries_from_results(names, results, suite=suite, hardware=hardware)
    for entry in entries:  # the same validation as `add`, for every entry before any is stored
        lb.validate(entry)
    units = len(tasks) * lb.SUITE_TRIALS
    for name, entry in zip(names, entries):
        fresh = ran[name] == units or own_units is not None
        if fresh:
            entry = entry.model_copy(update={"status": "verified"})
        old = lb.superseded_paths(entry) if replace else []
        path = lb.store_entry(entry, supersedes=old)
        if fresh:
            by = "leaderboard baselines" if ran[name] == units else "leaderboard baselines --time-budget"
            lb.record_verification(entry, path.stem, by=by, folder=path.parent)
            console.print(f"{name}: {entry.entry_id}")
        else:
            console.print(
                f"{name}: {entry.entry_id} (unverified: {units - ran[name]} of {units} units were loaded from "
                f"{checkpoint}, not run now; `latbench leaderboard verify {entry.entry_id}` re-runs it)",
                soft_wrap=True,
            )
        for superseded in old:
            lb.remove_entry(superseded)
            console.print(f"{name}: removed {superseded.stem} (superseded, --replace)")
    if own_units is not None:  # every entry is stored: the next sliced run starts afresh
        shutil.rmtree(own_units, ignore_errors=True)


def baselines_units_dir(suite: str, methods: list[str]) -> Path:
    """Where a ``baselines --time-budget`` (without ``--checkpoint``) keeps its finished units: one
    folder per suite and method set, in this user's latbench home (never a folder someone else supplies)."""
    import hashlib

    from latbench import paths

    which = hashlib.sha256("\n".join(sorted(methods)).encode()).hexdigest()[:16]
    return paths.home() / "baselines" / f"{suite}-{which}"
