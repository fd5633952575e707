"""How often each model of a finished run runs away, with and without the source-relative
length bound: every model's float32 CTranslate2 export decodes one test set (beam and batch as
the run's evaluation) once bounded by the run's `decoding.max_len_a`·|x| + `max_len_b` and once by
`max_length` alone, and the runaway share (outputs over 2·|x| + 10 words or repeating a word
4-gram 3+ times) of both is printed, with the longest output in words.

    python bench/runaway_bound.py [--results results/multi30k_en_de] [--testset NAME]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import yaml
from common import REPO

from nmtkd.runaway import runaway_share
from nmtkd.textio import read_lines
from nmtkd.translate import DecodeOptions, translate_file


def models_of(results: Path) -> list[str]:
    """The models with a float32 export, the teachers first."""
    names = sorted(path.parent.name for path in results.glob("models/*/ct2_float32"))
    names += sorted(f"{path.parent.parent.name}/{path.parent.name}"
                    for path in results.glob("models/*/seed*/ct2_float32"))
    return sorted(names, key=lambda name: name != "teacher")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=REPO / "results/multi30k_en_de")
    parser.add_argument("--testset", help="default: the run's first test set")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    config = yaml.safe_load((args.results / "config.yaml").read_text())
    evaluation = config["evaluation"]
    testset = args.testset or next(iter(config["data"]["test"]))
    source = args.results / f"data/raw/{testset}.{config['data']['src_lang']}"
    sources = read_lines(source)
    a, b = config["decoding"]["max_len_a"], config["decoding"]["max_len_b"]
    print(f"{testset}: {len(sources)} sentences, beam {evaluation['beam_size']}, bounded by "
          f"{a}·|x| + {b} (then max_length {evaluation['max_length']}) vs max_length alone")
    print(f"{'model':28} {'runaway bounded':>16} {'unbounded':>10} {'longest (words)':>16}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in models_of(args.results):
            shares, longest = [], []
            for bound_a, bound_b in ((a, b), (0.0, 0)):
                options = DecodeOptions(beam_size=evaluation["beam_size"],
                                        batch_size=evaluation["batch_size"],
                                        max_length=evaluation["max_length"],
                                        length_penalty=evaluation["length_penalty"],
                                        max_len_a=bound_a, max_len_b=bound_b,
                                        threads=args.threads)
                output = Path(tmp) / "hyp.txt"
                translate_file(args.results / f"models/{name}/ct2_float32", source, output,
                               options)
                hypotheses = read_lines(output)
                shares.append(runaway_share(hypotheses, sources))
                longest.append(max(len(h.split()) for h in hypotheses))
            print(f"{name:28} {shares[0]:15.1f}% {shares[1]:9.1f}% "
                  f"{longest[0]:>7} / {longest[1]:<7}")


if __name__ == "__main__":
    main()
