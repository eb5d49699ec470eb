"""A stand-in training job for runner tests.

It prints framework-style log lines mixed with one record per epoch (JSON
records carry the wall-clock ``time`` they were written):
accuracy ``start + step * (epoch - delay) + seed_shift * seed``, so every
converge epoch can be computed by hand.  Records are JSON objects, or MLPerf
``:::MLLOG`` events with ``--mllog``, written to stdout or, with
``--log-file``, to that file.  ``--fail`` exits with status 3 after two
epochs; ``--silent`` reports no metrics; ``--sleep`` waits that many seconds
after each epoch, so a run can be made long; ``--ignore-term`` ignores
SIGTERM, as a job busy in a collective operation may; ``--abort-on-term``
logs MLPerf's ``run_stop`` with status ``aborted`` on SIGTERM and exits 1.
"""

import argparse
import json
import signal
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--start", type=float, default=0.5)
parser.add_argument("--step", type=float, default=0.1)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--seed-shift", type=float, default=0.0)
parser.add_argument("--delay", type=int, default=0)
parser.add_argument("--fail", action="store_true")
parser.add_argument("--silent", action="store_true")
parser.add_argument("--mllog", action="store_true")
parser.add_argument("--log-file")
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--ignore-term", action="store_true")
parser.add_argument("--abort-on-term", action="store_true")
args = parser.parse_args()


def emit(line: str) -> None:
    if args.log_file is None:
        print(line, flush=True)
        return
    with open(args.log_file, "a") as log:
        print(line, file=log)


def report(record: dict) -> None:
    emit(json.dumps(record))


def mllog(key: str, value: object, **metadata: object) -> None:
    event = {"key": key, "value": value, "metadata": metadata}
    emit(":::MLLOG " + json.dumps(event))


def abort(signal_number: int, frame: object) -> None:
    mllog("run_stop", None, status="aborted")
    sys.exit(1)


if args.ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if args.abort_on_term:
    signal.signal(signal.SIGTERM, abort)

print("INFO starting training", flush=True)
if args.mllog:
    mllog("run_start", None)
for epoch in range(1, args.epochs + 1):
    progress = args.step * (epoch - args.delay)
    accuracy = round(args.start + progress + args.seed_shift * args.seed, 6)
    print(f"epoch {epoch}: loss going down", flush=True)
    if args.silent:
        pass
    elif args.mllog:
        mllog("eval_accuracy", accuracy, epoch_num=epoch)
    else:
        record = {"epoch": epoch, "eval_accuracy": accuracy, "loss": 1 / epoch}
        report({**record, "time": time.time()})
    if args.fail and epoch == 2:
        print("RuntimeError: CUDA out of memory (simulated)", file=sys.stderr)
        sys.exit(3)
    time.sleep(args.sleep)
if args.mllog:
    mllog("run_stop", None, status="success")
