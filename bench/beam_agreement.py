"""How often the project's torch beam search gives CTranslate2's float32 1-best, on a trained
model and real test sets; each difference is classified by the torch model's own scores.

    python bench/beam_agreement.py --checkpoint results/multi30k_en_de/models/teacher/model.pt \\
        --ct2 results/multi30k_en_de/models/teacher/ct2_float32 \\
        --spm results/multi30k_en_de/spm/spm.model results/multi30k_en_de/data/raw/test_*.en

A difference is a near-tie when the two outputs' length-normalised torch scores are within
0.01; otherwise the listed scores show which search missed the better hypothesis.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import ctranslate2
import torch

from nmtkd.beam_search import beam_translate_ids
from nmtkd.checkpoint import load_model
from nmtkd.decoding import score_targets
from nmtkd.spm import Tokenizer
from nmtkd.textio import read_lines


def normalised_score(model, source: list[int], target: list[int], penalty: float) -> float:
    # the length counts the </s>, as CTranslate2 4 normalises
    return sum(score_targets(model, [source], [target])[0]) / (len(target) + 1) ** penalty


def compare(path: Path, model, translator, tokenizer: Tokenizer, args) -> tuple[int, int]:
    lines = read_lines(path)
    sources = tokenizer.encode_ids(lines)
    started = time.perf_counter()
    ours = [h[0].tokens for h in beam_translate_ids(
        model, sources, 32, args.beam, args.max_length, args.length_penalty, progress=False)]
    torch_seconds = time.perf_counter() - started
    results = translator.translate_batch(
        tokenizer.encode_pieces(lines), max_batch_size=32, beam_size=args.beam,
        max_decoding_length=args.max_length, length_penalty=args.length_penalty)
    theirs = [[tokenizer.processor.piece_to_id(p) for p in r.hypotheses[0]] for r in results]
    differ = [i for i in range(len(lines)) if ours[i] != theirs[i]]
    near_ties = 0
    for i in differ:
        mine = normalised_score(model, sources[i], ours[i], args.length_penalty)
        other = normalised_score(model, sources[i], theirs[i], args.length_penalty)
        near_ties += abs(mine - other) < 0.01
        if abs(mine - other) >= 0.01:
            print(f"    line {i + 1}: torch {mine:.4f} ({len(ours[i])} tokens), "
                  f"CTranslate2 {other:.4f} ({len(theirs[i])} tokens)")
    same = len(lines) - len(differ)
    print(f"  {path.name}: {same}/{len(lines)} identical ({100 * same / len(lines):.1f} %); "
          f"{len(differ)} differ, {near_ties} of them near-ties; torch search "
          f"{len(lines) / torch_seconds:.1f} sent/s")
    return same, len(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--ct2", required=True, help="the checkpoint's float32 export")
    parser.add_argument("--spm", required=True)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--length-penalty", type=float, default=1.0)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("inputs", nargs="+", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_model(args.checkpoint)
    translator = ctranslate2.Translator(args.ct2, device="cpu", intra_threads=args.threads)
    tokenizer = Tokenizer(args.spm)
    print(f"beam {args.beam}, length penalty {args.length_penalty}, float32")
    totals = [compare(path, model, translator, tokenizer, args) for path in args.inputs]
    same, count = (sum(t[i] for t in totals) for i in (0, 1))
    print(f"all: {same}/{count} identical ({100 * same / count:.1f} %)")


if __name__ == "__main__":
    main()
