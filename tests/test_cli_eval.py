"""What ``latbench eval`` prints: the summary table, the progress bars' bookkeeping, ``--help``."""

from __future__ import annotations

import functools
import re
from types import SimpleNamespace

import click
import numpy as np
import pytest
from clirun import run_cli
from typer.main import get_command

from latbench.cli.common import RunProgress
from latbench.cli.main import app
from latbench.methods.base import Method


def _cli(*args):
    return run_cli(*args, env={"COLUMNS": "200"})


@functools.cache
def _help(path: tuple[str, ...]):
    """``latbench <path> --help``, run once per command for every test that reads it."""
    return _cli(*path, "--help")


def test_one_trial_prints_values_not_a_zero_spread(data, tmp_path):
    one = _cli("eval", "-m", "flops", "-t", "hard-3", "-k", "5", "--trials", "1", "--out", tmp_path / "one.json")
    assert one.exit_code == 0, one.stderr
    assert " ± " not in one.stdout and "flops  (1 trial; dataset" in one.stdout
    two = _cli("eval", "-m", "flops", "-t", "hard-3", "-k", "5", "--trials", "2")
    assert two.exit_code == 0, two.stderr
    assert "mean ± std over trials" in two.stdout and two.stdout.count(" ± ") == 8  # the title and the 7 metric columns

    # the error columns are the robust ones (NB201's near-zero latencies blow plain MAPE up)
    from latbench.eval.results import EvalResult

    agg = EvalResult.read(tmp_path / "one.json").results[0].aggregate
    header = next(line for line in one.stdout.splitlines() if "Spearman" in line)
    row = next(line for line in one.stdout.splitlines() if "hard-3" in line)
    assert "MdAPE %" in header and "MAPE⌊10 %⌋ %" in header and "MAPE %" not in header.replace("MdAPE %", "")
    cells = [c.strip() for c in row.strip("│┃ ").split("│")]
    assert cells[5:7] == [f"{agg['mdape']['mean']:.1f}", f"{agg['mape_floor']['mean']:.1f}"]
    assert f"{agg['mape']['mean']:.1f}" not in cells


class ConstantLatency(Method):
    def predict(self, device, arch_ids):
        return np.ones(len(arch_ids))


class RaisesInPredict(Method):
    def predict(self, device, arch_ids):
        raise ValueError("no model")


def test_a_constant_method_is_warned_once_and_a_raising_one_points_to_the_traceback(data):
    const = _cli("eval", "-m", "test_cli_eval:ConstantLatency", "-t", "hard-3", "-k", "5", "--trials", "2")
    assert const.exit_code == 0, const.stderr
    warned = [ln for ln in const.stderr.splitlines() if ln.startswith("warning: ")]
    assert warned == ["warning: constant prediction (or truth): rank correlation set to 0"]
    assert ".py:" not in const.stderr  # no source file and line: the method is the user's, not ours
    boom = _cli("eval", "-m", "test_cli_eval:RaisesInPredict", "-t", "hard-3", "-k", "5", "--trials", "1")
    assert boom.exit_code == 1 and boom.stderr.strip().endswith("(LATBENCH_DEBUG=1 prints the traceback)"), boom.stderr
    args = ("eval", "-m", "test_cli_eval:RaisesInPredict", "-t", "hard-3", "-k", "5", "--trials", "1")
    traced = run_cli(*args, env={"COLUMNS": "200", "LATBENCH_DEBUG": "1"})
    assert "Traceback" in traced.stderr and 'raise ValueError("no model")' in traced.stderr


def _commands(cmd: click.Command, path=()):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_help_shows_no_type_for_flags():
    """Flags take no value: ``--store``, ``--dry-run``, ``--help`` show no ``<bool>``; options keep their type."""
    commands = list(_commands(get_command(app)))
    assert len(commands) > 10
    for path, cmd in commands:
        res = _help(path)
        assert res.exit_code == 0, (path, res.output)
        assert "<bool>" not in res.stdout, (path, res.stdout)
        flags = [p for p in cmd.params if isinstance(p, click.Option) and p.is_flag]
        for p in flags:
            assert p.opts[-1] in res.stdout or p.hidden, (path, p.opts)
    trials = _cli("eval", "--help").stdout
    assert "--trials" in trials and "<int>" in trials and "--device" in trials


def _flat(text: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─┃]", " ", text).split())


def test_help_shows_every_option_help_whole_and_reflows_descriptions():
    """Rich help reads ``[word]`` as markup (and drops it) and keeps a docstring's hard line breaks:
    every option's help must come out word for word, and every prose paragraph of a command's
    description must be one line, so the terminal wraps it."""
    commands = list(_commands(get_command(app)))
    for path, cmd in commands:
        out = _flat(_help(path).stdout)
        for p in cmd.params:
            if getattr(p, "help", None):
                assert _flat(p.help) in out, (path, p.name, p.help)
        for para in (cmd.help or "").split("\n\n"):
            lines = para.splitlines()
            if not any(line[:1].isspace() or line.lstrip().startswith(("- ", "* ")) for line in lines):
                assert len(lines) <= 1, (path, para)
    assert sum(bool(cmd.help) and "\n\n" in cmd.help for _, cmd in commands) >= 3  # multi-paragraph descriptions exist


def test_reflow_joins_prose_and_keeps_lists_and_indented_blocks():
    from latbench.cli.common import _reflow

    doc = """First line
    goes on.

    A paragraph
    in two lines.

    - item one
    - item two

        indented code
        stays"""
    assert _reflow(doc).split("\n\n") == [
        "First line goes on.",
        "A paragraph in two lines.",
        "- item one\n- item two",
        "    indented code\n    stays",
    ]


def _unit(index, task, trial):
    return SimpleNamespace(index=index, task=SimpleNamespace(id=task), trial=trial)


def test_run_progress_follows_units_and_each_phase_of_a_method():
    u0, u1 = _unit(0, "hard-3", 0), _unit(1, "hard-3", 1)
    with RunProgress(2, lambda u: f"{u.task.id} trial {u.trial + 1}/2") as p:
        units = p.bars.tasks[p.units]
        p.step(0, 0, "", u0)  # a unit starts
        assert units.description == "hard-3 trial 1/2" and p.inner is None  # a method without steps: one bar
        p.step(1, 3, "source epoch", u0)
        p.step(2, 3, "source epoch", u0)
        inner = p.bars.tasks[p.inner]
        assert (inner.description, inner.completed, inner.total, inner.visible) == ("  source epoch", 2, 3, True)
        p.step(1, 50, "fine-tuning on pixel3", u0)  # a new phase: the bar starts over (and so does its ETA)
        assert (inner.description, inner.completed, inner.total) == ("  fine-tuning on pixel3", 1, 50)
        p.step(50, 50, "fine-tuning on pixel3", u0)
        p.step(1, 50, "fine-tuning on pixel3", u0)  # the same phase again (the next k): starts over too
        assert inner.completed == 1 and inner.finished_time is None
        p.unit_done(1, 2, 3.0, u0)
        assert units.completed == 1
        p.step(0, 0, "", u1)
        assert units.description == "hard-3 trial 2/2" and not inner.visible
        p.step(1, 3, "source epoch", u1)
        assert inner.visible and (inner.completed, inner.total) == (1, 3)


@pytest.mark.parametrize("command", ["eval", "sweep", "submit"])
def test_device_option_on_the_commands_that_run_methods(command):
    res = _cli(command, "--help")
    assert res.exit_code == 0 and "--device" in res.stdout and "auto" in res.stdout


def test_eta_is_the_average_pace_since_the_bar_started():
    from latbench.cli.common import _eta_column

    eta = _eta_column()

    def shown(**task):
        return eta.render(SimpleNamespace(**{"finished": False, "fields": {}, "elapsed": 10.0, **task})).plain

    assert shown(completed=0, total=4) == "-:--:--"  # no pace yet
    assert shown(completed=1, total=4, fields={"done_at": 10.0}) == "0:00:30"  # one unit in 10 s, three to go
    assert shown(completed=1, total=4, fields={"done_at": 10.0}, elapsed=25.0) == "0:00:15"  # counts down between steps
    assert shown(completed=1, total=4, fields={"done_at": 10.0}, elapsed=99.0) == "0:00:00"  # late: not negative
    assert shown(completed=6, total=8, fields={"start_done": 4, "done_at": 10.0}) == "0:00:10"  # 2 steps this phase
    assert shown(completed=4, total=4, finished=True) == "0:00:00"
