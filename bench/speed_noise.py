"""Run-to-run noise of the decoding-speed measurement: the same model measured 5 times with
the old protocol (a one-batch warm-up, then one timed pass over the whole test set) and with
the workflow's protocol (a warm-up pass, then the median of 3 timed runs on the first 500
sentences, decoding freely and at fixed lengths). Prints each protocol's tokens/s and its
max/min ratio; a ratio near 1 means that differences between models larger than it are the
models', not the machine's.

    python bench/speed_noise.py [--model CT2_DIR] [--measurements 5] [--threads 2]

Without --model, a student-preset model is trained briefly on Multi30k (about 2 min) and
exported to int8, so that outputs have realistic lengths. Then that model and an untrained one
of the same architecture (which runs every sentence to the length bound) are measured together
by the workflow's protocol: decoding freely their speeds differ with their output lengths; at
fixed lengths they do the same work, and their ratio should be within the noise above.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import multi30k_lines, train_small_model

from nmtkd.checkpoint import load_model
from nmtkd.export import export_model
from nmtkd.speed import measure_speeds
from nmtkd.textio import write_lines
from nmtkd.translate import DecodeOptions, load_translator, translate_lines


def old_protocol(model: Path, lines: list[str], options: DecodeOptions) -> float:
    """tokens/s of one timed pass after a one-batch warm-up (the protocol before)."""
    translator, tokenizer = load_translator(model, options)
    translate_lines(translator, tokenizer, lines[: options.batch_size], options, progress=False)
    started = time.perf_counter()
    hyps = translate_lines(translator, tokenizer, lines, options, progress=False)
    seconds = time.perf_counter() - started
    tokens = sum(len(p) + 1 for p in tokenizer.encode_pieces([t[0] for t in hyps.texts]))
    return tokens / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a CTranslate2 model directory")
    parser.add_argument("--measurements", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    options = DecodeOptions(beam_size=5, batch_size=32, max_length=256, threads=args.threads,
                            max_len_a=1.2, max_len_b=10)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, untrained = args.model, None
        if model is None:
            checkpoint, spm_model = train_small_model(tmp)
            model = tmp / "ct2_int8"
            export_model(checkpoint, spm_model, model, "int8")
            untrained = untrained_twin(checkpoint, spm_model, tmp)
        lines = multi30k_lines("test_2016_flickr", "en")
        write_lines(tmp / "test.en", lines)
        old = [old_protocol(model, lines, options) for _ in range(args.measurements)]
        new = [measure_speeds({"m": (model, "default")}, tmp / "test.en", tmp / "s.json",
                              options, repeats=3, sentences=500)["models"]["m"]
               for _ in range(args.measurements)]
        pair = None if untrained is None else measure_speeds(
            {"trained": (model, "default"), "untrained": (untrained, "default")},
            tmp / "test.en", tmp / "pair.json", options, repeats=3, sentences=500)["models"]
    print(f"model {model}; {args.threads} threads, beam 5, batch 32; "
          f"{args.measurements} measurements of the same model each")
    for label, values in (("old: 1 timed pass of 1000 sentences", old),
                          ("new: median of 3 runs of 500 sentences",
                           [m["tokens_per_second"] for m in new]),
                          ("new, at fixed lengths (the speed-ups)",
                           [m["fixed"]["tokens_per_second"] for m in new])):
        print(f"{label:42} tok/s {min(values):7.0f} .. {max(values):7.0f}   "
              f"max/min {max(values) / min(values):.3f}")
    if pair is not None:
        trained, blank = pair["trained"], pair["untrained"]
        print("one architecture, trained and untrained weights, measured together:")
        for mode, label in ((lambda r: r, "free decoding"), (lambda r: r["fixed"],
                                                             "fixed lengths")):
            fast, slow = mode(trained)["tokens_per_second"], mode(blank)["tokens_per_second"]
            sentences = (mode(trained)["sentences_per_second"]
                         / mode(blank)["sentences_per_second"])
            print(f"  {label:14} trained {fast:7.0f} tok/s, untrained {slow:7.0f} tok/s, "
                  f"ratio {fast / slow:.3f}; sentences/s ratio {sentences:.3f}")


def untrained_twin(checkpoint: Path, spm_model: Path, directory: Path) -> Path:
    """The int8 export of a freshly initialised model of the checkpoint's architecture."""
    import torch

    from nmtkd.model import Transformer

    trained, _ = load_model(checkpoint)
    torch.manual_seed(12345)
    blank = Transformer(trained.cfg)
    path = directory / "untrained.pt"
    torch.save({"config": trained.cfg.to_dict(), "model": blank.state_dict(), "meta": {}}, path)
    export_model(path, spm_model, directory / "untrained_int8", "int8")
    return directory / "untrained_int8"


if __name__ == "__main__":
    main()
