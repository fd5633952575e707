"""Trainer throughput (target tokens/s) for the teacher and student presets, fp32 and bf16,
with achieved FLOP/s as a fraction of a plain torch matmul measured in the same run.

    python bench/trainer_throughput.py [--updates 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import torch
import yaml
from common import REPO, multi30k_lines

from nmtkd.batching import ParallelData, token_batches
from nmtkd.criteria import TrainingStep
from nmtkd.criteria.nll import LabelSmoothedNLL
from nmtkd.model import ModelConfig, Transformer
from nmtkd.spm import Tokenizer, train_spm
from nmtkd.textio import write_lines


def matmul_flops(dtype: torch.dtype, size: int = 2048, repeat: int = 10) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * size**3 * repeat / (time.perf_counter() - start)


def linear_flops_per_batch(cfg: ModelConfig, src_tokens: int, tgt_tokens: int) -> float:
    """Forward + backward (3x forward) FLOPs of the linear layers; attention scores excluded."""
    d, f, v = cfg.d_model, cfg.ffn_dim, cfg.vocab_size
    # weights touched per token (multiply-adds): self-attention Q, K, V, O: 4d²; feed-forward 2df
    encoder = cfg.encoder_layers * (4 * d * d + 2 * d * f)
    # per target token: self-attention 4d², cross-attention query and output 2d², feed-forward
    # 2df, and the output projection dv
    decoder = cfg.decoder_layers * (4 * d * d + 2 * d * d + 2 * d * f) + d * v
    # cross-attention keys and values (2d²) are computed once per source token
    decoder_src = cfg.decoder_layers * 2 * d * d
    return 6 * (encoder * src_tokens + decoder_src * src_tokens + decoder * tgt_tokens)


def measure(cfg: ModelConfig, data: ParallelData, precision: str, updates: int,
            max_tokens: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = Transformer(cfg).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98))
    loss_fn = LabelSmoothedNLL(0.1)
    autocast = ((lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16"
                else contextlib.nullcontext)
    batches = token_batches(data, max_tokens, seed=1, epoch=0)
    warmup = 3
    tokens = flops = 0.0
    start = 0.0
    for step, indices in enumerate(batches[: updates + warmup]):
        if step == warmup:
            start, tokens, flops = time.perf_counter(), 0.0, 0.0
        batch = data.collate(indices)
        out = loss_fn(TrainingStep(model, batch, step + 1, autocast))
        optimizer.zero_grad()
        (out.loss / out.normaliser).backward()
        optimizer.step()
        src_tokens = int((batch.source != 0).sum())
        tokens += out.normaliser
        flops += linear_flops_per_batch(cfg, src_tokens, out.normaliser)
    seconds = time.perf_counter() - start
    return {"tokens_per_s": tokens / seconds, "flops": flops / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=2500)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src, tgt = multi30k_lines("train", "en", 8000), multi30k_lines("train", "de", 8000)
        write_lines(tmp / "all.txt", src + tgt)
        train_spm([tmp / "all.txt"], tmp / "spm.model", config["sentencepiece"]["vocab_size"])
        tokenizer = Tokenizer(tmp / "spm.model")
        data = ParallelData(tokenizer.encode_ids(src), tokenizer.encode_ids(tgt))
    peak = {"fp32": matmul_flops(torch.float32), "bf16": matmul_flops(torch.bfloat16)}
    print(f"torch matmul 2048^3: fp32 {peak['fp32'] / 1e9:.1f} GFLOP/s, "
          f"bf16 {peak['bf16'] / 1e9:.1f} GFLOP/s ({args.threads} threads)")
    print(f"{'preset':8} {'precision':9} {'tgt tok/s':>10} {'GFLOP/s':>8} {'of matmul':>9} "
          f"{'bf16/fp32':>9}")
    for preset in ("student", "teacher"):
        cfg = ModelConfig(vocab_size=len(tokenizer), **config["presets"][preset])
        results = {p: measure(cfg, data, p, args.updates, args.max_tokens)
                   for p in ("fp32", "bf16")}
        for precision, result in results.items():
            ratio = results[precision]["tokens_per_s"] / results["fp32"]["tokens_per_s"]
            print(f"{preset:8} {precision:9} {result['tokens_per_s']:10.0f} "
                  f"{result['flops'] / 1e9:8.1f} {result['flops'] / peak[precision]:9.2f} "
                  f"{ratio:9.2f}")


if __name__ == "__main__":
    main()
