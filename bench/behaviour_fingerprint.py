"""Fingerprint of the tiny end-to-end run: every output that must not change when the code is
reshaped without changing behaviour (translations, distilled data, weights, metrics).

Run it before and after a refactoring and compare the two JSON files; training is
deterministic on CPU, so they must be identical. Timings (seconds, tokens/s, speed-ups) are
left out: they measure the machine, not the code.

    python bench/behaviour_fingerprint.py --workdir /tmp/fp --output before.json
    python bench/behaviour_fingerprint.py --workdir /tmp/fp2 --output after.json
    diff before.json after.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

TIMING_WORDS = ("second", "minute", "tok_s", "speed", "per_s", "time", "wall", "sent_s")
SUMMARY_KEYS = ("parameters", "updates", "epochs", "final_model", "final_valid", "train_ppl",
                "best_update", "history", "stop_reason", "train_pairs")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def untimed(value):
    """`value` without the entries whose key names a timing."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items()
                if not any(word in k.lower() for word in TIMING_WORDS)}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def weights_digest(path: Path) -> str:
    from nmtkd.checkpoint import load_model

    model, _ = load_model(path)
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def fingerprint(results: Path) -> dict:
    import pandas as pd

    found: dict[str, object] = {}
    for pattern in ("translations/**/*.*", "distill/**/*.*", "data/spm/variants/**/*.*"):
        for path in sorted(results.glob(pattern)):
            found[str(path.relative_to(results))] = sha256(path.read_bytes())
    for path in sorted(results.glob("eval/**/*.json")):
        found[str(path.relative_to(results))] = untimed(json.loads(path.read_text()))
    for path in sorted(results.glob("models/*/training.json")):
        summary = json.loads(path.read_text())
        found[str(path.relative_to(results))] = {k: summary.get(k) for k in SUMMARY_KEYS}
    for path in sorted(results.glob("models/*/model.pt")):
        found[str(path.relative_to(results))] = weights_digest(path)
    table = pd.read_csv(results / "tables/comparison.csv")
    kept = [c for c in table.columns if not any(word in c.lower() for word in TIMING_WORDS)]
    found["tables/comparison.csv"] = table[kept].round(6).to_dict(orient="records")
    return found


def run(workdir: Path) -> Path:
    from workflow_config import (
        SHARED_MULTI30K,
        multi30k_subset,
        run_snakemake,
        tiny_config,
        with_default_students,
    )

    if not (SHARED_MULTI30K / "train.en.gz").is_file():
        sys.exit(f"{SHARED_MULTI30K}: Multi30k mirror not found; set NMTKD_DATA_MIRROR")
    workdir.mkdir(parents=True, exist_ok=True)
    data = multi30k_subset(workdir, train=2000, other=200)
    config = with_default_students(tiny_config("tiny", data, max_updates=200,
                                               valid_interval=100))
    config["distill"].update({"chunks": 2, "max_length": 100})
    run_snakemake(workdir, config, "--cores", "2")
    return workdir / "results/tiny"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="an empty directory")
    parser.add_argument("--output", type=Path, required=True, help="the fingerprint (JSON)")
    parser.add_argument("--reuse", action="store_true",
                        help="fingerprint the run already in --workdir instead of running")
    args = parser.parse_args()
    results = args.workdir / "results/tiny" if args.reuse else run(args.workdir)
    found = fingerprint(results)
    args.output.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    print(f"{args.output}: {len(found)} outputs fingerprinted from {results}")


if __name__ == "__main__":
    main()
