"""Free-text de-identification speed on long runs of names, and the notes' recall and precision.

Name detection used to be quadratic in the length of a run of names (48 KB in 55 s); it is one pass
over the words now. This prints KB/s of ``detect_phi`` for 12, 24, 48 and 96 KB of names (mixed
scripts and cases) and of ordinary clinical text; the time ratio of 16 KB to 8 KB for adversarial runs (units
repeated: near 2 is linear, near 4 quadratic); and, with ``--quality``, the recall and precision of both
modes (strict, allowlist) on the hand-labelled adversarial note sets (blind4 is the never-tuned one).

Run: .venv/bin/python benchmarks/deid_notes_speed.py [--quality]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from precimed.privacy import detect_phi, generate_notes

NAMES = "Maria Smith john lopez NGUYỄN THỊ MAI O'Brien Oluwaseun Adeyemi Zhang Wei José Ñúñez "
DATA = Path(__file__).resolve().parents[1] / "tests" / "privacy" / "data"
# repeated units that once made a pattern or the name pass quadratic (kept here: timings never go in tests)
ADVERSARIAL = ("a-", "a.", "A. ", "a dot ", "a1:", "Dr Ab Cd Ef, ", "Christmas ", "-ab/cd\n", "x / jr\n",
               "Pa Kou ", "A. B. ", '"Jun" ', "(田中) ", "Co. Ab ", "Rua Ab 1, ")


def _clinical(size: int) -> str:
    text = "\n".join(n.text for n in generate_notes(400, seed=1))
    while len(text) < size:
        text += text
    return text[:size]


def _rate(text: str, repeat: int = 3, mode: str = "strict") -> tuple[float, float]:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        detect_phi(text, mode=mode)
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
    print(f"\n{'adversarial unit (allowlist mode)':36} {'8 KB s':>8} {'16 KB s':>8} {'ratio':>6}")
    for unit in ADVERSARIAL:
        small, large = (_rate(unit * (size // len(unit)), mode="allowlist")[0] for size in (8_000, 16_000))
        print(f"{unit!r:36} {small:8.3f} {large:8.3f} {large / small:6.2f}")
    if args.quality:
        from precimed.privacy.note_eval import evaluate_labelled, format_results, load_labelled

        for name in ("adversarial_dev.txt", "adversarial_test.txt", "adversarial_blind.txt", "adversarial_blind2.txt",
                     "adversarial_blind3.txt", "adversarial_blind4.txt"):
            notes = load_labelled(DATA / name)
            for mode in ("strict", "allowlist"):
                print(f"\n{name} ({len(notes)} notes), mode {mode}")
                print(format_results(evaluate_labelled(notes, mode)))


if __name__ == "__main__":
    main()
