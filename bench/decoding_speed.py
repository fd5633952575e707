"""CTranslate2 decoding throughput against the project's own torch greedy decoding, same model.

    python bench/decoding_speed.py [--checkpoint results/<exp>/models/teacher/model.pt
                                    --spm results/<exp>/spm/spm.model] [--sentences 500]

Without a checkpoint, a freshly initialised teacher preset is used (speed only).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import ctranslate2
import torch
import yaml
from common import REPO, multi30k_lines, timed

from nmtkd.checkpoint import load_model, save_model
from nmtkd.decoding import greedy_translate_ids
from nmtkd.export import export_model
from nmtkd.model import ModelConfig, Transformer
from nmtkd.spm import Tokenizer, train_spm
from nmtkd.textio import write_lines


def ct2_decode(translator, pieces, beam, batch_size, max_length):
    results = translator.translate_batch(pieces, beam_size=beam, max_batch_size=batch_size,
                                         max_decoding_length=max_length)
    return [r.hypotheses[0] for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--spm", type=Path)
    parser.add_argument("--sentences", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sources = multi30k_lines("test_2016_flickr", "en", args.sentences)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.checkpoint:
            checkpoint, spm_model = args.checkpoint, args.spm
            model, _ = load_model(checkpoint)
        else:
            config = yaml.safe_load((REPO / "config.yaml").read_text())
            train = multi30k_lines("train", "en", 5000) + multi30k_lines("train", "de", 5000)
            write_lines(tmp / "text", train)
            spm_model = tmp / "spm.model"
            train_spm([tmp / "text"], spm_model, config["sentencepiece"]["vocab_size"])
            model = Transformer(ModelConfig(vocab_size=len(Tokenizer(spm_model)),
                                            **config["presets"]["teacher"])).eval()
            checkpoint = tmp / "model.pt"
            save_model(checkpoint, model)
        tokenizer = Tokenizer(spm_model)
        export_model(checkpoint, spm_model, tmp / "ct2", "float32")
        export_model(checkpoint, spm_model, tmp / "ct2_int8", "int8")
        ids, pieces = tokenizer.encode_ids(sources), tokenizer.encode_pieces(sources)

        torch_seconds, torch_out = timed(greedy_translate_ids, model, ids, 64, args.max_length)
        torch_tokens = sum(len(h) + 1 for h in torch_out)
        print(f"{len(sources)} sentences, {args.threads} threads")
        print(f"torch greedy (batch 64, kv cache): {torch_tokens / torch_seconds:8.0f} tok/s  "
              f"{len(sources) / torch_seconds:6.1f} sent/s")
        best = {}
        for directory, label in ((tmp / "ct2", "float32"), (tmp / "ct2_int8", "int8")):
            for inter in (1, 2):
                intra = max(1, args.threads // inter)
                translator = ctranslate2.Translator(str(directory), device="cpu",
                                                    inter_threads=inter, intra_threads=intra)
                for batch_size in (16, 32, 64):
                    for beam in (1, 5):
                        seconds, out = timed(ct2_decode, translator, pieces, beam, batch_size,
                                             args.max_length, repeat=2)
                        tokens = sum(len(h) + 1 for h in out)
                        key = (label, beam)
                        speed = tokens / seconds
                        if speed > best.get(key, (0,))[0]:
                            best[key] = (speed, inter, intra, batch_size, len(sources) / seconds)
                        if label == "float32" and beam == 1 and inter == 1 and batch_size == 64:
                            same = sum(
                                [tokenizer.processor.piece_to_id(p) for p in h] == t
                                for h, t in zip(out, torch_out, strict=True))
                            print(f"CT2 float32 greedy output identical to torch: "
                                  f"{same}/{len(sources)}")
        for (label, beam), (speed, inter, intra, batch_size, sents) in sorted(best.items()):
            ratio = speed / (torch_tokens / torch_seconds)
            print(f"CT2 {label:7} beam {beam}: {speed:8.0f} tok/s {sents:6.1f} sent/s "
                  f"(inter {inter}, intra {intra}, batch {batch_size}) "
                  f"= {ratio:5.1f}x torch greedy")


if __name__ == "__main__":
    main()
