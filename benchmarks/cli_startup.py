"""CLI start-up: seconds to the first byte of output for every command that needs no model.

Run: python benchmarks/cli_startup.py [repeats]. Each command runs in a fresh interpreter (as a user runs
it); the table shows the median wall time to its first output and the import time of precimed's modules
(python -X importtime), beside `python -c pass` (the interpreter alone) for scale. Target: < 1 s.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATIENT = ROOT / "examples" / "patients" / "gbsg_breast.json"


def first_output_seconds(args: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT)
    assert proc.stdout is not None
    proc.stdout.read(1)
    took = time.perf_counter() - start
    proc.communicate()
    return took


def import_seconds(args: list[str]) -> float:
    """Cumulative import time of the top-level modules the command imported (python -X importtime)."""
    out = subprocess.run([args[0], "-X", "importtime", *args[1:]], capture_output=True, text=True, cwd=ROOT).stderr
    total = 0
    for line in out.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
        if m and not m.group(2).startswith(" "):
            total += int(m.group(1))
    return total / 1e6


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    py = sys.executable
    tmp = Path(tempfile.mkdtemp())
    subprocess.run([py, "-m", "precimed.cli", "ward", "simulate", "--out", str(tmp / "ward"), "--patients", "20",
                    "--days", "1"], check=True, capture_output=True)
    commands = {
        "python -c pass (interpreter alone)": [py, "-c", "print(1)"],
        "precimed --help": [py, "-m", "precimed.cli", "--help"],
        "precimed datasets": [py, "-m", "precimed.cli", "datasets"],
        "precimed plan (no bundle)": [py, "-m", "precimed.cli", "plan", "--patient", str(PATIENT)],
        "precimed monitor (NEWS2 only)": [py, "-m", "precimed.cli", "monitor", "--input",
                                          str(tmp / "ward" / "observations.jsonl"), "--output", str(tmp / "a.jsonl")],
        "precimed ward simulate": [py, "-m", "precimed.cli", "ward", "simulate", "--out", str(tmp / "w2"),
                                   "--patients", "5", "--days", "1", "--overwrite"],
        "precimed keygen": [py, "-m", "precimed.cli", "keygen", str(tmp / "k.bin")],
    }
    print(f"{'command':40} {'first output (s)':>17} {'imports (s)':>12}")
    for name, args in commands.items():
        times = []
        for _ in range(repeats):
            (tmp / "k.bin").unlink(missing_ok=True)
            times.append(first_output_seconds(args))
        (tmp / "k.bin").unlink(missing_ok=True)
        print(f"{name:40} {statistics.median(times):17.2f} {import_seconds(args):12.2f}")


if __name__ == "__main__":
    main()
