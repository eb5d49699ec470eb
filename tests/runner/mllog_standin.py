"""A stand-in for an MLPerf ResNet-50 launcher that replays recorded curves.

It takes the reference implementation's flags (``--name=value``), checks
the ones optiloop's example sets, and writes the MLLOG events a real run
writes, among framework log lines: ``run_start``, the hyperparameters, then
``eval_start``, ``eval_accuracy`` and ``eval_stop`` at each recorded
evaluation, and ``run_stop`` with the recorded status.

The curves come from the JSON file named by ``STANDIN_RUNS``: a list of
runs ``{"evals": [[epoch, top1], ...], "status": "success" | "aborted"}``;
the run with seed ``SEED`` replays ``runs[SEED % len(runs)]``.
``STANDIN_SLEEP`` seconds pass after each evaluation.
"""

import json
import os
import sys
import time

REQUIRED = {
    "base_learning_rate": float,
    "warmup_epochs": int,
    "train_epochs": int,
    "weight_decay": float,
    "momentum": float,
    "end_learning_rate": float,
    "label_smoothing": float,
    "epochs_between_evals": int,
    "eval_offset_epochs": int,
    "target_accuracy": float,
}


def parse_flags(argv: list[str]) -> dict[str, object]:
    given = dict(arg[2:].partition("=")[::2] for arg in argv if arg.startswith("--"))
    flags: dict[str, object] = {}
    for name, kind in REQUIRED.items():
        if name not in given:
            sys.exit(f"error: flag --{name} is required")
        try:
            flags[name] = kind(given[name])
        except ValueError:
            sys.exit(f"error: --{name}={given[name]} is not {kind.__name__}")
    if flags["momentum"] != 0.9 or flags["end_learning_rate"] != 1e-4:
        sys.exit("error: momentum must be 0.9 and the end learning rate 1e-4")
    return flags


def mllog(key: str, value: object = None, **metadata: object) -> None:
    event = {"namespace": "", "time_ms": int(time.time() * 1000), "key": key}
    event.update(value=value, metadata={"file": "standin.py", **metadata})
    print(":::MLLOG " + json.dumps(event), flush=True)


def main() -> None:
    flags = parse_flags(sys.argv[1:])
    with open(os.environ["STANDIN_RUNS"]) as file:
        runs = json.load(file)
    run = runs[int(os.environ.get("SEED", "0")) % len(runs)]
    pause = float(os.environ.get("STANDIN_SLEEP", "0"))

    print("I1203 14:00:00.000 tensorflow: Using MirroredStrategy", flush=True)
    mllog("run_start")
    for name in ("base_learning_rate", "warmup_epochs", "weight_decay"):
        mllog(f"lars_opt_{name}", flags[name])
    for epoch, accuracy in run["evals"]:
        mllog("eval_start", epoch_num=epoch)
        print(f"I1203 step {epoch * 1000}: loss 2.1, 9000 images/s", flush=True)
        mllog("eval_accuracy", accuracy, epoch_num=epoch)
        mllog("eval_stop", epoch_num=epoch)
        time.sleep(pause)
    mllog("run_stop", status=run["status"])


if __name__ == "__main__":
    main()
