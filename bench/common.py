"""Shared pieces of the benchmarks: a Multi30k-or-synthetic corpus and timing helpers."""

from __future__ import annotations

import gzip
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MULTI30K = Path(os.environ.get("NMTKD_DATA_MIRROR", REPO.parent / "shared/data/multi30k"))


def multi30k_lines(split: str, lang: str, limit: int | None = None) -> list[str]:
    path = MULTI30K / f"{split}.{lang}.gz"
    if not path.is_file():
        sys.exit(f"{path}: not found; set NMTKD_DATA_MIRROR to the Multi30k directory")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in handle]
    return lines[:limit] if limit else lines


def timed(function, *args, repeat: int = 1, **kwargs) -> tuple[float, object]:
    """Best wall time of `repeat` calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, result


def train_small_model(directory: Path, pairs: int = 5000, updates: int = 300,
                      preset: str = "student") -> tuple[Path, Path]:
    """A briefly trained model on the first `pairs` Multi30k pairs (a benchmark that decodes
    needs realistic output lengths; an untrained model runs every sentence to max_length):
    its checkpoint and SentencePiece model."""
    import yaml

    from nmtkd.batching import ParallelData
    from nmtkd.model import ModelConfig
    from nmtkd.spm import Tokenizer, train_spm
    from nmtkd.textio import write_lines
    from nmtkd.trainer import TrainConfig, Trainer

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    src, tgt = multi30k_lines("train", "en", pairs), multi30k_lines("train", "de", pairs)
    write_lines(directory / "text", src + tgt)
    spm_model = directory / "spm.model"
    train_spm([directory / "text"], spm_model, config["sentencepiece"]["vocab_size"])
    tokenizer = Tokenizer(spm_model)
    data = ParallelData(tokenizer.encode_ids(src), tokenizer.encode_ids(tgt))
    valid = ParallelData(tokenizer.encode_ids(src[:100]), tokenizer.encode_ids(tgt[:100]))
    settings = TrainConfig(max_tokens=2500, lr=0.002, warmup=100, max_updates=updates,
                           valid_interval=updates, valid_bleu_sentences=50, average_last=0,
                           device="cpu")
    model_cfg = ModelConfig(vocab_size=len(tokenizer), **config["presets"][preset])
    trainer = Trainer(model_cfg, settings, data, valid, tgt[:100], tokenizer, directory / "work")
    trainer.fit()
    trainer.write_outputs(directory / "model.pt", directory / "training.json")
    return directory / "model.pt", spm_model
