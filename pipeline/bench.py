"""`make bench`: time a full synth (`python -m pipeline synth`) in a fresh process; print the median."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

GOAL_SECONDS = 0.3


def time_synth(config: str, out: str) -> float:
    """Wall-clock seconds of one synth in a new interpreter (imports included, as a user waits)."""
    # As on a user's machine, bytecode is cached: a shell that sets PYTHONDONTWRITEBYTECODE would
    # otherwise time the compiling of every module on every run.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pipeline", "synth", "--config", config, "--out", out],
        check=True,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 when the median misses the goal."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="pipeline.yml")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as out:
        time_synth(args.config, out)  # warm the OS file cache; not counted
        samples = [time_synth(args.config, out) for _ in range(args.runs)]
    median = statistics.median(samples)
    verdict = "within" if median <= GOAL_SECONDS else "OVER"
    print(
        f"synth in a fresh process: median {median:.3f} s over {args.runs} runs "
        f"(min {min(samples):.3f}, max {max(samples):.3f}); goal {GOAL_SECONDS} s: {verdict}"
    )
    return 0 if median <= GOAL_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
