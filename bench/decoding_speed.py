"""CTranslate2 decoding throughput against the project's own torch decoding, same model, same
conditions: both decoders get the same sentences, the same batch size, the same length bound,
the same threads, one untimed warm-up pass each, and the median of the same number of timed
runs. Compared: greedy (torch greedy vs CT2 beam 1) and beam 5 (the torch beam search vs CT2
beam 5), CT2 in float32 and int8.

    python bench/decoding_speed.py [--checkpoint model.pt --spm spm.model] [--sentences 500]

Without a checkpoint, a student-preset model is trained briefly on Multi30k (about 2 min) so
that outputs have realistic lengths (an untrained model decodes every sentence to the bound).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from common import multi30k_lines, train_small_model

from nmtkd.beam_search import beam_translate_ids
from nmtkd.checkpoint import load_model
from nmtkd.decoding import greedy_translate_ids
from nmtkd.export import export_model
from nmtkd.spm import Tokenizer
from nmtkd.translate import DecodeOptions, load_translator, translate_lines


def median_seconds(run, repeats: int) -> tuple[float, object]:
    """One untimed warm-up call, then the median wall time of `repeats` calls."""
    result = run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def torch_runs(model, ids: list[list[int]], options: DecodeOptions) -> dict[int, object]:
    bound = options.max_length
    return {
        1: lambda: greedy_translate_ids(model, ids, options.batch_size, bound),
        5: lambda: [hyps[0].tokens for hyps in beam_translate_ids(
            model, ids, options.batch_size, 5, bound, options.length_penalty,
            progress=False)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--spm", type=Path)
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sources = multi30k_lines("test_2016_flickr", "en", args.sentences)
    # a fixed bound of 100 tokens for all (the torch greedy search has no relative bound)
    options = DecodeOptions(batch_size=32, max_length=100, threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.checkpoint:
            checkpoint, spm_model = args.checkpoint, args.spm
            described = f"{checkpoint}"
        else:
            checkpoint, spm_model = train_small_model(tmp)
            described = "a student-preset model trained for 300 updates on 5000 Multi30k pairs"
        model, _ = load_model(checkpoint)
        tokenizer = Tokenizer(spm_model)
        ids = tokenizer.encode_ids(sources)
        print(f"model: {described}; {len(sources)} sentences, {args.threads} threads, batch "
              f"{options.batch_size}, at most 100 tokens, median of {args.repeats} "
              "runs after a warm-up")
        torch_speed = {}
        for beam, run in torch_runs(model, ids, options).items():
            seconds, out = median_seconds(run, args.repeats)
            torch_speed[beam] = sum(len(h) + 1 for h in out) / seconds
            print(f"torch {'greedy' if beam == 1 else 'beam 5'}: {torch_speed[beam]:8.0f} tok/s")
        for quant in ("float32", "int8"):
            export_model(checkpoint, spm_model, tmp / f"ct2_{quant}", quant)
            translator, ct2_tokenizer = load_translator(tmp / f"ct2_{quant}", options)
            for beam in (1, 5):
                settings = replace(options, beam_size=beam)
                seconds, hyps = median_seconds(
                    lambda s=settings, t=translator, k=ct2_tokenizer: translate_lines(
                        t, k, sources, s, progress=False), args.repeats)
                outputs = [texts[0] for texts in hyps.texts]
                speed = sum(len(p) + 1 for p in tokenizer.encode_pieces(outputs)) / seconds
                print(f"CT2 {quant:7} beam {beam}: {speed:8.0f} tok/s = "
                      f"{speed / torch_speed[beam]:4.1f}x torch")


if __name__ == "__main__":
    main()
