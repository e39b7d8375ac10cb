"""Free-text de-identification speed on long runs of names, and the notes' recall and precision.

Name detection used to be quadratic in the length of a run of names (48 KB in 55 s); it is one pass
over the words now. This prints KB/s of ``detect_phi`` for 12, 24, 48 and 96 KB of names (mixed
scripts and cases) and of ordinary clinical text, and, with ``--quality``, the recall and precision of
both modes (strict, allowlist) on the hand-labelled adversarial note sets.

Run: .venv/bin/python benchmarks/deid_notes_speed.py [--quality]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from precimed.privacy import detect_phi, generate_notes

NAMES = "Maria Smith john lopez NGUYỄN THỊ MAI O'Brien Oluwaseun Adeyemi Zhang Wei José Ñúñez "
DATA = Path(__file__).resolve().parents[1] / "tests" / "privacy" / "data"


def _clinical(size: int) -> str:
    text = "\n".join(n.text for n in generate_notes(400, seed=1))
    while len(text) < size:
        text += text
    return text[:size]


def _rate(text: str, repeat: int = 3) -> tuple[float, float]:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        detect_phi(text)
        best = min(best, time.perf_counter() - start)
    return best, len(text.encode()) / 1000 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", action="store_true", help="also print recall/precision on the labelled sets")
    args = parser.parse_args()
    detect_phi("warm up the word lists: Maria Smith")
    print(f"{'input':14} {'KB':>4} {'seconds':>8} {'KB/s':>8}")
    for kb in (12, 24, 48, 96):
        for label, text in (("names", (NAMES * (kb * 20))[:kb * 1000]), ("clinical", _clinical(kb * 1000))):
            seconds, rate = _rate(text)
            print(f"{label:14} {kb:4d} {seconds:8.3f} {rate:8.1f}")
    if args.quality:
        from precimed.privacy.note_eval import evaluate_labelled, format_results, load_labelled

        for name in ("adversarial_dev.txt", "adversarial_test.txt"):
            notes = load_labelled(DATA / name)
            for mode in ("strict", "allowlist"):
                print(f"\n{name} ({len(notes)} notes), mode {mode}")
                print(format_results(evaluate_labelled(notes, mode)))


if __name__ == "__main__":
    main()
