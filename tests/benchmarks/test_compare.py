"""benchmarks/compare.py: its command line is refused up front, before any
run starts, and its summary lines say what they counted.  Nothing here runs
a benchmark."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "compare.py"


def _load_compare() -> ModuleType:
    # benchmarks/ is a folder of scripts, not a package.  The module is
    # registered before it runs, as its dataclasses look themselves up there.
    spec = importlib.util.spec_from_file_location("benchmarks_compare", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


compare = _load_compare()


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """argparse's message for a command line it refuses with status 2."""
    with pytest.raises(SystemExit) as exit_info:
        compare.parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--seeds", "--budget", "--workers"])
@pytest.mark.parametrize("value", ["0", "-5"])
def test_counts_below_one_are_refused(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    message = _refused([flag, value], capsys)
    assert f"argument {flag}: {value} is below 1; give 1 or more" in message


@pytest.mark.parametrize("flag", ["--ax-seeds", "--ax-budget"])
def test_ax_counts_below_one_are_refused(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    message = _refused([flag, "0"], capsys)
    assert f"argument {flag}: 0 is below 1" in message


def test_a_count_that_is_not_a_number_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    message = _refused(["--budget", "ten"], capsys)
    assert "argument --budget: 'ten' is not a whole number" in message


def test_an_unknown_problem_is_refused_with_the_valid_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    message = _refused(["--problems", "branin", "nope"], capsys)
    assert "argument --problems: invalid choice: 'nope'" in message
    for name in compare.PROBLEMS:
        assert name in message


def test_an_unknown_strategy_is_refused_with_the_valid_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    message = _refused(["--strategies", "optiloop", "nope"], capsys)
    assert "argument --strategies: invalid choice: 'nope'" in message
    for name in compare.STRATEGIES:
        assert name in message


def test_a_json_path_in_a_missing_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing"
    message = _refused(["--json", str(missing / "results.json")], capsys)
    assert f"argument --json: folder {missing} does not exist" in message


def test_a_json_path_that_is_a_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = _refused(["--json", str(tmp_path)], capsys)
    assert f"argument --json: {tmp_path} is a folder" in message


def test_skipping_both_stages_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    message = _refused(["--no-runs", "--no-latency"], capsys)
    assert "leave nothing to do" in message


def test_main_refuses_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        compare.main(["--json", str(tmp_path / "missing" / "results.json")])
    assert exit_info.value.code == 2
    # The first thing a run prints is the load average.
    assert "load average" not in capsys.readouterr().out


def test_good_arguments_are_kept(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    args = compare.parse_args(
        [
            "--seeds",
            "2",
            "--budget",
            "1",
            "--workers",
            "1",
            "--problems",
            "branin",
            "--strategies",
            "optiloop",
            "random",
            "--json",
            str(results),
        ]
    )
    assert (args.seeds, args.budget, args.workers) == (2, 1, 1)
    assert args.problems == ["branin"]
    assert args.strategies == ["optiloop", "random"]
    assert args.json == results


def test_defaults_leave_counts_to_the_mode() -> None:
    args = compare.parse_args([])
    assert args.seeds is None and args.budget is None
    assert args.strategies == list(compare.STRATEGIES)
    assert args.problems == list(compare.PROBLEMS)


def _run(strategy: str, problem: str, regrets: list[float]) -> Any:
    return compare.RunRecord(strategy, problem, 0, regrets, 0.0)


def test_a_strategy_without_a_figure_is_named_and_not_counted() -> None:
    runs = [
        _run("optiloop", "branin", [0.5, 0.1, 0.1]),
        _run("random", "branin", [0.4, 0.3, 0.2]),
        _run("ax-botorch", "branin", [0.0, 0.0]),
    ]
    _, rows, standings = compare.regret_table(runs, (2, 3))

    assert standings[2].wins == 0 and standings[3].wins == 1
    assert standings[3].unmeasured == {"ax-botorch"}
    line = compare.standing_line(3, standings[3], n_problems=1)
    assert line == (
        "optiloop lowest median regret at 3 evals on 1 of 1 problems "
        "(ax-botorch has none at 3, not counted)"
    )
    assert compare.standing_line(2, standings[2], n_problems=1).endswith(
        "on 0 of 1 problems"
    )
    ax_row = next(row for row in rows if row[1] == "ax-botorch")
    assert ax_row[3] == "-"


def test_the_target_is_stated_only_where_it_was_set() -> None:
    # Every problem, and the checkpoints of 50 and 100 evaluations.
    standing = compare.Standing(wins=4)
    every = len(compare.PROBLEMS)
    assert compare.standing_line(50, standing, n_problems=every).endswith(
        f"on 4 of {every} problems (target: {compare.TARGET_WINS} of {every})"
    )
    assert "target" in compare.standing_line(100, standing, n_problems=every)
    assert "target" not in compare.standing_line(25, standing, n_problems=every)
    assert "target" not in compare.standing_line(50, standing, n_problems=2)


def test_no_summary_without_optiloop(capsys: pytest.CaptureFixture[str]) -> None:
    runs = [_run("random", "branin", [0.4, 0.3])]
    compare.print_regrets(runs, (2,), seeds=1, ax_seeds=1, ax_budget=2)
    assert "optiloop lowest" not in capsys.readouterr().out
