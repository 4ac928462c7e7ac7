"""`make bench`: time a full synth (`python -m pipeline synth`) in a fresh process; print the median.
Then time `make local`'s loop once (train, serve, test; `python -m scripts.local`) against its own
goal; only a loop that fails to run changes the exit code, not its time."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

GOAL_SECONDS = 0.3
LOCAL_GOAL_SECONDS = 30.0


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


def time_local(config: str, work_dir: str) -> tuple[float, int]:
    """Wall-clock seconds of one local loop in a new interpreter, and its exit code."""
    start = time.perf_counter()
    argv = ["--config", config, "--work-dir", work_dir, "--junit-xml", os.path.join(work_dir, "report.xml")]
    result = subprocess.run(
        [sys.executable, "-m", "scripts.local", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        print(result.stderr.strip(), file=sys.stderr)
    return elapsed, result.returncode


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 when the median misses the goal."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="pipeline.yml")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-local", action="store_true", help="time the synth only")
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
    status = 0 if median <= GOAL_SECONDS else 1
    if not args.no_local:
        with tempfile.TemporaryDirectory() as work:
            seconds, code = time_local(args.config, work)
        if code != 0:
            print(f"local loop (train, serve, test): FAILED after {seconds:.1f} s (exit {code})")
            return 1
        verdict = "within" if seconds <= LOCAL_GOAL_SECONDS else "OVER"
        print(
            f"local loop (train, serve, test) in a fresh process: {seconds:.1f} s; goal {LOCAL_GOAL_SECONDS:g} s: {verdict}"
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
