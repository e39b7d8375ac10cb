"""Mutation testing of the modules named in issue 11 (finding 13), one module at a time, with mutmut 3.

Run it with ``make mutation`` (not part of ``make test``; it needs the CPU for minutes). For each module
it prepares a work folder ``mutants/<name>/`` holding links to ``src/``, ``tests/`` and ``examples/`` and a
``pyproject.toml`` that tells mutmut to mutate that one file and to run only that module's test
files, runs ``mutmut run --max-children 1`` there, and reads every mutant's verdict back with
``mutmut results --all true``. Survivors listed in ``mutation/equivalent.toml`` (mutants that cannot
change behaviour, each with its reason) are counted as equivalent; the rest count as survived.

The table it prints (and writes to ``mutants/summary.md``) is what ``docs/mutation.md`` records.
``MODULES=metrics,news2 make mutation`` runs a subset. The work folders are rebuilt on every run, so
an edited module is never scored from a stale copy. Exit status: 0 when every module reached the
target (at least 90% of the non-equivalent mutants killed), 1 otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "mutants"
TARGET = 0.90


@dataclass(frozen=True)
class Module:
    """One module under mutation and the smallest set of test files that covers it."""

    name: str
    source: str
    tests: tuple[str, ...]


# Order matters only for the wall time: the modules other engineers edit go last.
MODULES: tuple[Module, ...] = (
    Module("metrics", "src/precimed/evaluate/metrics.py",
           ("tests/evaluate/test_metrics.py", "tests/security/test_branches_metrics.py")),
    Module("news2", "src/precimed/monitoring/news2.py",
           ("tests/monitoring/test_news2.py", "tests/security/test_branches_news2.py")),
    Module("pseudonym", "src/precimed/privacy/pseudonym.py",
           ("tests/privacy/test_policy_and_keys.py", "tests/security/test_branches_privacy.py")),
    Module("dates", "src/precimed/privacy/dates.py",
           ("tests/privacy/test_dates_and_safe_harbor.py", "tests/security/test_branches_privacy.py")),
    Module("pgx", "src/precimed/planning/pgx.py",
           ("tests/planning/test_pgx.py", "tests/planning/test_pgx_branches.py",
            "tests/planning/test_pgx_mutants.py")),
    Module("audit", "src/precimed/service/audit.py",
           ("tests/service/test_audit_unit.py",)),
)

PYPROJECT = """\
# Written by mutation/run.py for one module; rebuilt on every run.
[tool.mutmut]
source_paths = ["src/precimed/"]
only_mutate = [{source}]
also_copy = ["examples"]  # tests read example files relative to the repository root
pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly"]
pytest_add_cli_args_test_selection = [{tests}]
use_git_change_detection = false

[tool.pytest.ini_options]
pythonpath = ["tests"]
addopts = "-q"
"""


@dataclass
class Result:
    """Verdicts of one module's mutants."""

    module: Module
    status: dict[str, str] = field(default_factory=dict)
    equivalent: dict[str, str] = field(default_factory=dict)

    def count(self, *names: str) -> int:
        return sum(1 for s in self.status.values() if s in names)

    @property
    def survivors(self) -> list[str]:
        return sorted(k for k, s in self.status.items() if s in ("survived", "no tests") and k not in self.equivalent)

    @property
    def killed(self) -> int:
        return self.count("killed", "timeout", "caught by type check")

    @property
    def score(self) -> float:
        relevant = len(self.status) - len([k for k in self.equivalent if k in self.status])
        return self.killed / relevant if relevant else 1.0


def load_equivalent() -> dict[str, str]:
    """Mutant name -> why it cannot change behaviour (mutation/equivalent.toml)."""
    path = ROOT / "mutation" / "equivalent.toml"
    if not path.exists():
        return {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {name: str(reason) for name, reason in data.get("equivalent", {}).items()}


def prepare(module: Module) -> Path:
    """A fresh work folder for `module`: links to src/ and tests/ and its own pyproject.toml."""
    folder = WORK / module.name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "src").symlink_to(ROOT / "src", target_is_directory=True)
    (folder / "tests").symlink_to(ROOT / "tests", target_is_directory=True)
    (folder / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    present = [t for t in module.tests if (ROOT / t).exists()]
    missing = sorted(set(module.tests) - set(present))
    if missing:
        print(f"[{module.name}] test file(s) not present, skipped: {', '.join(missing)}")
    quoted = ", ".join(json.dumps(t) for t in present)
    (folder / "pyproject.toml").write_text(PYPROJECT.format(source=json.dumps(module.source), tests=quoted))
    return folder


def mutmut(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the venv's mutmut in `folder` on one core."""
    exe = Path(sys.executable).with_name("mutmut")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run([str(exe), *args], cwd=folder, env=env, text=True, capture_output=True, check=False)


def run_module(module: Module, equivalent: dict[str, str]) -> Result:
    folder = prepare(module)
    print(f"[{module.name}] mutating {module.source} against {len(module.tests)} test file(s) ...", flush=True)
    done = mutmut(folder, "run", "--max-children", "1")
    (folder / "run.log").write_text(done.stdout + done.stderr)
    listing = mutmut(folder, "results", "--all", "true")
    result = Result(module)
    for line in listing.stdout.splitlines():
        m = re.match(r"\s*(\S+): (.+)$", line)
        if m:
            result.status[m[1]] = m[2].strip()
    result.equivalent = {k: v for k, v in equivalent.items() if k in result.status}
    if not result.status:
        print(f"[{module.name}] mutmut produced no verdicts; see {folder / 'run.log'}", flush=True)
    return result


def table(results: list[Result]) -> str:
    head = ("| module | mutants | killed | equivalent | survived | no tests | killed / non-equivalent |\n"
            "|---|---:|---:|---:|---:|---:|---:|\n")
    rows = []
    for r in results:
        equivalent = len(r.equivalent)
        survived = len([k for k in r.survivors if r.status[k] == "survived"])
        no_tests = len([k for k in r.survivors if r.status[k] == "no tests"])
        rows.append(f"| {r.module.source.removeprefix('src/precimed/')} | {len(r.status)} | {r.killed} | "
                    f"{equivalent} | {survived} | {no_tests} | {100 * r.score:.1f}% |")
    total = sum(len(r.status) for r in results)
    killed = sum(r.killed for r in results)
    equivalent = sum(len(r.equivalent) for r in results)
    score = killed / (total - equivalent) if total - equivalent else 1.0
    rows.append(f"| **all** | {total} | {killed} | {equivalent} | "
                f"{sum(len([k for k in r.survivors if r.status[k] == 'survived']) for r in results)} | "
                f"{sum(len([k for k in r.survivors if r.status[k] == 'no tests']) for r in results)} | "
                f"{100 * score:.1f}% |")
    return head + "\n".join(rows) + "\n"


def main(argv: list[str]) -> int:
    wanted = [w for w in (os.environ.get("MODULES") or ",".join(m.name for m in MODULES)).split(",") if w]
    by_name = {m.name: m for m in MODULES}
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        print(f"unknown module(s) {unknown}; choose from {list(by_name)}", file=sys.stderr)
        return 2
    equivalent = load_equivalent()
    results = [run_module(by_name[w], equivalent) for w in wanted]
    text = table(results)
    for r in results:
        if r.survivors:
            text += f"\nsurvivors in {r.module.source}:\n" + "\n".join(
                f"- {k} ({r.status[k]})" for k in r.survivors) + "\n"
    WORK.mkdir(exist_ok=True)
    (WORK / "summary.md").write_text(text)
    print(text)
    return 0 if all(r.status and r.score >= TARGET for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
