"""A fast stand-in job for campaign tests: a bowl with its minimum near a bound.

``loss = (x - 0.9)**2 + (y - 0.3)**2 + seed / 1000``, so every value can be
computed by hand (the seed term lets seeds differ by a known amount).  Each
run appends one JSON line ``{"x", "y", "seed"}`` to ``--runs``, so a test
counts the runs really launched; ``--sleep`` makes a run last that long.
"""

import argparse
import json
import time

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
parser.add_argument("--y", type=float, required=True)
parser.add_argument("--seed", type=int, required=True)
parser.add_argument("--runs", required=True)
parser.add_argument("--sleep", type=float, default=0.0)
args = parser.parse_args()

time.sleep(args.sleep)
loss = (args.x - 0.9) ** 2 + (args.y - 0.3) ** 2 + args.seed / 1000
print(json.dumps({"epoch": 1, "loss": loss}), flush=True)
with open(args.runs, "a") as runs:
    print(json.dumps({"x": args.x, "y": args.y, "seed": args.seed}), file=runs)
