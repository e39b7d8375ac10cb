"""Print the diff of every surviving mutant of one module's last run (``python mutation/show.py metrics``).

Reads ``mutants/<name>/`` as left by ``mutation/run.py``; equivalent mutants listed in
``mutation/equivalent.toml`` are left out unless ``--all`` is given.
"""

from __future__ import annotations

import sys

from run import WORK, load_equivalent, mutmut


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: mutation/show.py MODULE [--all]", file=sys.stderr)
        return 2
    folder = WORK / argv[0]
    equivalent = {} if "--all" in argv else load_equivalent()
    listing = mutmut(folder, "results").stdout.splitlines()
    names = [line.split(":")[0].strip() for line in listing if line.strip().endswith(("survived", "no tests"))]
    for name in names:
        if name not in equivalent:
            print(mutmut(folder, "show", name).stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
