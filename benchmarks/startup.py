"""Start-up time of the `tfn` command: the median wall time of N fresh processes.

    python benchmarks/startup.py                 # tfn --help, 20 runs
    python benchmarks/startup.py -n 50 -- check lenet5

Each run is a new interpreter started through the installed `tfn` entry
point (the same path a user's shell takes), so imports are measured cold
from the interpreter's view but with the OS file cache warm (one untimed run
first). It also reports whether torch was imported, which must not happen
for --help, `check --help`, `check` and `schema`. Aim: under 0.25 s for --help.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

PROBE = "import sys; sys.argv = ['tfn', *{args!r}]\ntry:\n    from tfn.cli.main import main; main()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules, file=sys.stderr)"


def time_runs(command: list[str], runs: int) -> list[float]:
    subprocess.run(command, capture_output=True)  # warm the file cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=20)
    parser.add_argument("args", nargs="*", default=["--help"], help="tfn arguments (default: --help)")
    options = parser.parse_args()
    entry = shutil.which("tfn") or sys.exit("the `tfn` command is not on PATH: pip install -e . first")
    baseline = time_runs([sys.executable, "-c", "pass"], options.runs)
    times = time_runs([entry, *options.args], options.runs)
    probe = subprocess.run([sys.executable, "-c", PROBE.format(args=options.args)], capture_output=True, text=True)
    imported_torch = probe.stderr.strip().endswith("True")
    print(f"tfn {' '.join(options.args)}: median {statistics.median(times) * 1000:.0f} ms, "
          f"min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms over {options.runs} runs")
    print(f"bare python: median {statistics.median(baseline) * 1000:.0f} ms; torch imported: {imported_torch}")


if __name__ == "__main__":
    main()
