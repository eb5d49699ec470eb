"""benchmarks/compare.py: its command line is refused up front, before any
run starts, and its summary lines say what they counted.  Nothing here runs
a benchmark."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from types import ModuleType, SimpleNamespace
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


@pytest.mark.parametrize(
    ("flag", "known", "valid_names"),
    [
        ("--problems", "branin", list(compare.PROBLEMS)),
        ("--strategies", "optiloop", list(compare.STRATEGIES)),
    ],
)
def test_an_unknown_name_is_refused_with_the_valid_names(
    flag: str, known: str, valid_names: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    message = _refused([flag, known, "nope"], capsys)
    assert f"argument {flag}: invalid choice: 'nope'" in message
    for name in valid_names:
        assert name in message


def test_a_json_path_in_a_missing_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing"
    message = _refused(["--json", str(missing / "results.json")], capsys)
    assert f"argument --json: folder {missing} does not exist" in message


def test_a_json_path_under_a_file_says_it_is_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("")
    for path in (not_a_folder / "x.json", not_a_folder / "deeper" / "x.json"):
        message = _refused(["--json", str(path)], capsys)
        assert f"argument --json: {not_a_folder} is a file, not a folder" in message


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_a_json_path_the_system_will_not_create_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # /proc exists and looks writable to root, yet takes no new files.
    path = Path("/proc/optiloop-results.json")
    message = _refused(["--json", str(path)], capsys)
    assert f"argument --json: {path} cannot be written (" in message
    assert "give a path in a folder you can write to" in message


def test_the_json_check_leaves_no_file_and_keeps_an_existing_one(
    tmp_path: Path,
) -> None:
    new = tmp_path / "new.json"
    compare.parse_args(["--json", str(new)])
    assert not new.exists()

    earlier = tmp_path / "earlier.json"
    earlier.write_text('{"runs": []}')
    compare.parse_args(["--json", str(earlier)])
    assert earlier.read_text() == '{"runs": []}'


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


def test_repeated_names_count_once_in_their_first_order() -> None:
    args = compare.parse_args(
        [
            "--problems",
            "gramacy",
            "branin",
            "gramacy",
            "--strategies",
            "random",
            "optiloop",
            "random",
            "random",
        ]
    )
    assert args.problems == ["gramacy", "branin"]
    assert args.strategies == ["random", "optiloop"]


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
        "optiloop lowest median regret (ties included) after 3 evaluations: "
        "1 of 1 problems (ax-botorch ran fewer evaluations, not counted)"
    )
    assert compare.standing_line(2, standings[2], n_problems=1).endswith(
        "after 2 evaluations: 0 of 1 problems"
    )
    ax_row = next(row for row in rows if row[1] == "ax-botorch")
    assert ax_row[3] == "-"


def test_one_evaluation_is_singular() -> None:
    line = compare.standing_line(1, compare.Standing(), n_problems=1)
    assert "after 1 evaluation: 0 of 1 problems" in line


def test_the_target_is_stated_only_where_it_was_set() -> None:
    # Every problem, and the checkpoints of 50 and 100 evaluations.
    standing = compare.Standing(wins=4)
    every = len(compare.PROBLEMS)
    assert compare.standing_line(50, standing, n_problems=every).endswith(
        f": 4 of {every} problems (target: {compare.TARGET_WINS} of {every})"
    )
    assert "target" in compare.standing_line(100, standing, n_problems=every)
    assert "target" not in compare.standing_line(25, standing, n_problems=every)
    assert "target" not in compare.standing_line(50, standing, n_problems=2)


def test_no_summary_without_optiloop(capsys: pytest.CaptureFixture[str]) -> None:
    runs = [_run("random", "branin", [0.4, 0.3])]
    compare.print_regrets(runs, (2,), seeds=1, ax_seeds=1, ax_budget=2)
    assert "optiloop lowest" not in capsys.readouterr().out


def test_the_title_counts_ax_seeds_and_evaluations(
    capsys: pytest.CaptureFixture[str],
) -> None:
    runs = [_run("random", "branin", [0.4, 0.3]), _run("ax-botorch", "branin", [0.2])]
    compare.print_regrets(runs, (2,), seeds=1, ax_seeds=3, ax_budget=1)
    title = " ".join(capsys.readouterr().out.split())
    assert "over 1 seed (Ax: 3 seeds of 1 evaluation);" in title


class _InlinePool:
    """Runs each task at once, in this process: the spawned workers of the
    real pool would import the real module, not this test's stand-ins."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> _InlinePool:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None

    def submit(self, task: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(task(*args))
        return future


@pytest.fixture
def inline_main(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``main`` with every run and timing faked, and an RN50 problem that
    records each time it is built (the real one solves its optimum, ~25 s).
    Returns that record."""
    built: list[str] = []

    def fake_rn50() -> Any:
        built.append("rn50")
        return SimpleNamespace(optimum=42.25, tolerance=0.5)

    def fake_latency(strategy: str, sizes: list[int]) -> Any:
        seconds = {size: [0.01] for size in sizes}
        return compare.LatencyRecord(strategy, seconds, seconds, 100.0, 10.0)

    def fake_run(strategy: str, problem: str, budget: int, seed: int) -> Any:
        return compare.RunRecord(strategy, problem, seed, [1.0] * budget, 0.0)

    monkeypatch.setitem(compare.PROBLEMS, "rn50", fake_rn50)
    monkeypatch.setattr(compare, "ProcessPoolExecutor", _InlinePool)
    monkeypatch.setattr(compare, "measure_latency", fake_latency)
    monkeypatch.setattr(compare, "run_once", fake_run)
    # main pins these for its workers; the fixture restores them afterwards.
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(variable, "1")
    return built


def test_no_rn50_optimum_without_its_runs(
    inline_main: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    compare.main(["--no-runs", "--problems", "rn50", "--strategies", "random"])
    assert "rn50 optimum" not in capsys.readouterr().out
    assert inline_main == []


def test_the_rn50_optimum_is_printed_before_its_runs(
    inline_main: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--no-latency", "--problems", "rn50", "--strategies", "random"]
    compare.main([*argv, "--seeds", "1", "--budget", "2"])
    output = capsys.readouterr().out
    assert "rn50 optimum (expected converge epoch): 42.250" in output
    assert output.index("rn50 optimum") < output.index("Simple regret")
