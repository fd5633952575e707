"""Data preparation on a synthetic corpus of up to 1 M pairs: cleaning lines/s and peak RSS.

Each size runs in a fresh process and reports its own high-water mark (VmHWM, which, unlike
getrusage's ru_maxrss, does not carry over the parent's memory across fork + exec).

    python bench/data_prep.py [--sizes 250000 500000 1000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from nmtkd.synthetic import make_corpus

CHILD = """
import json, sys, time
from pathlib import Path
from nmtkd.cleaning import CleaningRules, clean_corpus
d = Path(sys.argv[1]); dedup = sys.argv[2] == "1"
start = time.perf_counter()
report = clean_corpus(d / "in.src", d / "in.tgt", d / "out.src", d / "out.tgt", d / "r.json",
                      CleaningRules(deduplicate=dedup))
seconds = time.perf_counter() - start
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "kept": report["kept"],
                  "rss_mb": int(hwm.split()[1]) / 1024}))
"""


def write_corpus(directory: Path, size: int, chunk: int = 100_000) -> None:
    """Write `size` synthetic pairs, a chunk at a time (so this process stays small), with
    about 1 % exact duplicates."""
    with (directory / "in.src").open("w") as src, (directory / "in.tgt").open("w") as tgt:
        for start in range(0, size, chunk):
            sources, targets = make_corpus(min(chunk, size - start), seed=start, vocabulary=2000,
                                           max_len=25)
            for index, (s, t) in enumerate(zip(sources, targets, strict=True)):
                if index % 100 == 99:
                    s, t = sources[0], targets[0]
                src.write(s + "\n")
                tgt.write(t + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[250_000, 500_000, 1_000_000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"{'pairs':>9} {'dedup':>5} {'lines/s':>9} {'peak RSS MB':>11} "
              f"{'RSS / smallest':>14}")
        smallest: dict[str, float] = {}
        for size in args.sizes:
            write_corpus(tmp, size)
            for dedup in ("0", "1"):
                out = subprocess.run([sys.executable, "-c", CHILD, str(tmp), dedup],
                                     capture_output=True, text=True, check=True)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                smallest.setdefault(dedup, result["rss_mb"])
                print(f"{size:9d} {dedup:>5} {size / result['seconds']:9.0f} "
                      f"{result['rss_mb']:11.1f} {result['rss_mb'] / smallest[dedup]:14.2f}")


if __name__ == "__main__":
    main()
