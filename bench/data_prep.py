"""Data preparation on a synthetic corpus of up to 1 M pairs: cleaning lines/s and peak RSS.

Each size runs in a fresh process, so the peak RSS of one does not hide in another's.

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
from nmtkd.textio import write_lines

CHILD = """
import json, resource, sys, time
from pathlib import Path
from nmtkd.cleaning import CleaningRules, clean_corpus
d = Path(sys.argv[1]); dedup = sys.argv[2] == "1"
start = time.perf_counter()
report = clean_corpus(d / "in.src", d / "in.tgt", d / "out.src", d / "out.tgt", d / "r.json",
                      CleaningRules(deduplicate=dedup))
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "kept": report["kept"],
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[250_000, 500_000, 1_000_000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"{'pairs':>9} {'dedup':>5} {'lines/s':>9} {'peak RSS MB':>11} {'MB/1M pairs':>11}")
        for size in args.sizes:
            sources, targets = make_corpus(size, seed=size, vocabulary=2000, max_len=25)
            write_lines(tmp / "in.src", sources)
            write_lines(tmp / "in.tgt", targets)
            del sources, targets
            for dedup in ("0", "1"):
                out = subprocess.run([sys.executable, "-c", CHILD, str(tmp), dedup],
                                     capture_output=True, text=True, check=True)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{size:9d} {dedup:>5} {size / result['seconds']:9.0f} "
                      f"{result['rss_mb']:11.1f} {result['rss_mb'] / size * 1e6:11.1f}")


if __name__ == "__main__":
    main()
