"""A stand-in training job for runner tests.

It prints framework-style log lines mixed with one JSON object per epoch:
accuracy ``start + step * epoch + seed_shift * seed``, so every converge
epoch can be computed by hand.  ``--fail`` exits with status 3 after two
epochs; ``--silent`` prints no metrics.
"""

import argparse
import json
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--start", type=float, default=0.5)
parser.add_argument("--step", type=float, default=0.1)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--seed-shift", type=float, default=0.0)
parser.add_argument("--fail", action="store_true")
parser.add_argument("--silent", action="store_true")
args = parser.parse_args()

print("INFO starting training", flush=True)
for epoch in range(1, args.epochs + 1):
    accuracy = args.start + args.step * epoch + args.seed_shift * args.seed
    print(f"epoch {epoch}: loss going down", flush=True)
    if not args.silent:
        record = {
            "epoch": epoch,
            "eval_accuracy": round(accuracy, 6),
            "loss": 1 / epoch,
        }
        print(json.dumps(record), flush=True)
    if args.fail and epoch == 2:
        print("RuntimeError: CUDA out of memory (simulated)", file=sys.stderr)
        sys.exit(3)
