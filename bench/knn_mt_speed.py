"""What kNN-MT's retrieval costs at decoding time, in one run: a finished run's datastore model
decoding with and without retrieval (the project's torch beam search, beam 5, batch 32, the
first 500 sentences of test_2016_flickr, 2 threads), for k = 8 and 64 neighbours with the
run's IVFPQ index, and for k = 8 with an exact flat index built here over the same keys (on the
first 64 sentences only: it decodes at about one sentence per second). Each line is one
`nmtkd knn-speed` measurement: both sides warmed up once, then interleaved timed rounds; the
ratio is kNN-MT's target tokens/s over the model's own in the same rounds.

    python bench/knn_mt_speed.py [--results results/multi30k_en_de] [--model baseline]

Needs the run's `knn_datastore` and `knn_index` outputs (e.g. `snakemake --config study=knn`).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import REPO

from nmtkd.knn.datastore import Datastore
from nmtkd.knn.jobs import build_index
from nmtkd.knn.speed import measure_knn_speed
from nmtkd.translate import DecodeOptions, KnnFiles


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=REPO / "results/multi30k_en_de")
    parser.add_argument("--model", default="baseline", help="the run's knn.model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--flat-sentences", type=int, default=64)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    knn = args.results / "knn" / args.model / "gold"
    if not (knn / "index/meta.json").is_file():
        raise SystemExit(f"{knn}/index: not found; run the workflow's knn study first")
    options = DecodeOptions(beam_size=5, batch_size=32, threads=args.threads, max_len_a=1.2,
                            max_len_b=10)
    with tempfile.TemporaryDirectory() as tmp:
        store = Datastore(knn / "datastore")
        build_index(knn / "datastore", {"type": "flat"}, Path(tmp) / "flat", args.threads)
        print(f"{args.model}: datastore of {len(store)} keys, beam 5, batch 32, "
              f"{args.threads} threads, median of {args.repeats}")
        print(f"{'index':6} {'k':>3} {'sentences':>9} {'tok/s base':>11} {'tok/s kNN':>10} "
              f"{'ratio':>6}")
        for index_name, index, k, sentences in (
                ("ivfpq", knn / "index", 8, args.sentences),
                ("ivfpq", knn / "index", 64, args.sentences),
                ("flat", Path(tmp) / "flat", 8, args.flat_sentences)):
            report = measure_knn_speed(
                args.results / "models" / args.model / "model.pt",
                args.results / "spm/spm.model", KnnFiles(knn / "datastore", index, k),
                args.results / "data/raw/test_2016_flickr.en", Path(tmp) / "speed.json",
                options, args.repeats, sentences)
            models = report["models"]
            print(f"{index_name:6} {k:3d} {sentences:9d} "
                  f"{models['base']['tokens_per_second']:11.0f} "
                  f"{models['knn']['tokens_per_second']:10.0f} {report['ratio']:6.2f}")

if __name__ == "__main__":
    main()
