"""Distillation speed with CTranslate2: training sentences per second of the teacher's beam
search (Seq-KD, beam 5, 1-best) and of the Seq-Inter n-best search (beam 8, 8-best), float32
and int8, as one job with 2 threads and as one of two 1-thread chunk jobs.

    python bench/distillation_speed.py [--teacher results/multi30k_en_de/models/teacher]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import REPO, multi30k_lines

from nmtkd.translate import DecodeOptions, load_translator, translate_lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--teacher", type=Path,
                        default=REPO / "results/multi30k_en_de/models/teacher",
                        help="directory holding ct2_float32 and ct2_int8")
    parser.add_argument("--sentences", type=int, default=2000)
    args = parser.parse_args()
    lines = multi30k_lines("train", "en", args.sentences)
    print(f"{len(lines)} Multi30k training sources, batch 32")
    print(f"{'compute':8} {'search':14} {'threads':>8} {'sent/s':>8}")
    for quant in ("float32", "int8"):
        model = args.teacher / f"ct2_{quant}"
        if not (model / "model.bin").is_file():
            raise SystemExit(f"{model}: no CTranslate2 model (run the workflow first)")
        for threads, inter in ((2, 2), (1, 1)):
            for beam, nbest in ((5, 1), (8, 8)):
                options = DecodeOptions(beam_size=beam, nbest=nbest, threads=threads,
                                        inter_threads=inter)
                translator, tokenizer = load_translator(model, options)
                translate_lines(translator, tokenizer, lines[:64], options, progress=False)
                start = time.perf_counter()
                translate_lines(translator, tokenizer, lines, options, progress=False)
                rate = len(lines) / (time.perf_counter() - start)
                print(f"{quant:8} {f'beam {beam}, {nbest}-best':14} {threads:8} {rate:8.1f}")


if __name__ == "__main__":
    main()
