"""Data-parallel training with torchrun + DDP on CPU (gloo): same results as one process."""

import json
import subprocess
import sys

import pytest
import torch
from conftest import encode_pair, kill_9_after_save

from nmtkd import checkpoint
from nmtkd.spm import Tokenizer

MODEL = {"d_model": 64, "heads": 4, "encoder_layers": 2, "decoder_layers": 2, "ffn_dim": 256,
         "dropout": 0.0}


def train_command(synthetic, synthetic_spm, directory, processes, accumulate, updates=12):
    tokenizer = Tokenizer(synthetic_spm)
    directory.mkdir(parents=True, exist_ok=True)
    train_files = encode_pair(tokenizer, *synthetic["train"], directory)
    valid_files = encode_pair(tokenizer, *synthetic["valid"], directory)
    settings = {"model": MODEL,
                "training": {"max_tokens": 800, "accumulate": accumulate, "max_updates": updates,
                             "valid_interval": 6, "save_interval": 3, "device": "cpu",
                             "warmup": 10, "lr": 0.002, "valid_bleu_sentences": 20}}
    return [sys.executable, "-m", "nmtkd.cli", "train", "--train-src", str(train_files[0]),
            "--train-tgt", str(train_files[1]), "--valid-src", str(valid_files[0]),
            "--valid-tgt", str(valid_files[1]), "--valid-ref", str(synthetic["valid"][1]),
            "--spm", str(synthetic_spm), "--settings", json.dumps(settings),
            "--workdir", str(directory / "work"), "--output", str(directory / "model.pt"),
            "--summary", str(directory / "training.json"), "--threads", "2",
            "--nproc-per-node", str(processes)]


def train(synthetic, synthetic_spm, directory, processes, accumulate, updates=12):
    subprocess.run(train_command(synthetic, synthetic_spm, directory, processes, accumulate,
                                 updates), check=True, capture_output=True, text=True)
    records = [json.loads(line) for line in
               (directory / "work" / "train_log.jsonl").read_text().splitlines()]
    return [r for r in records if "train_nll" in r]


@pytest.mark.e2e
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(
        synthetic, synthetic_spm, tmp_path):
    single = train(synthetic, synthetic_spm, tmp_path / "single", processes=1, accumulate=2)
    ddp = train(synthetic, synthetic_spm, tmp_path / "ddp", processes=2, accumulate=1)
    assert [r["update"] for r in ddp] == list(range(1, 13))
    # the same batches form each update: identical token counts
    assert [r["tokens"] for r in ddp] == [r["tokens"] for r in single]
    # The two runs differ only in the float summation order of the gradients (all-reduce vs
    # accumulation): measured losses agree to <= 1e-7 relative over 12 updates, so 1e-5 leaves
    # room for other CPUs while catching any real difference (a lost shard or a wrong scale
    # moves the loss by percents).
    assert ddp[0]["train_nll"] == pytest.approx(single[0]["train_nll"], rel=1e-6)
    for a, b in zip(ddp, single, strict=True):
        assert a["train_nll"] == pytest.approx(b["train_nll"], rel=1e-5)
    summary = json.loads((tmp_path / "ddp" / "training.json").read_text())
    assert summary["processes"] == 2 and summary["updates"] == 12
    one, _ = checkpoint.load_model(tmp_path / "single" / "model.pt")
    two, _ = checkpoint.load_model(tmp_path / "ddp" / "model.pt")
    # Adam divides each step by sqrt(v): for embedding rows of tokens that barely occur, a
    # 1e-12 gradient difference still becomes a step of about lr, hence weights agree to
    # about 10 steps x lr (measured 3e-4), far less than a wrong run would move them.
    worst = max(float((a - b).abs().max()) for a, b in zip(
        one.state_dict().values(), two.state_dict().values(), strict=True))
    assert worst < 2e-3


@pytest.mark.e2e
def test_distributed_run_resumes_after_kill_9(synthetic, synthetic_spm, tmp_path):
    train(synthetic, synthetic_spm, tmp_path / "straight", processes=2, accumulate=1,
          updates=30)
    command = train_command(synthetic, synthetic_spm, tmp_path / "killed", processes=2,
                            accumulate=1, updates=30)
    # the whole process group: the launcher and both workers
    saved = kill_9_after_save(command, tmp_path / "killed" / "work" / "state.pt", 9)
    assert 9 <= saved["state"]["update"] < 30 and len(saved["rng"]) == 2
    subprocess.run(command, check=True, capture_output=True)
    straight, _ = checkpoint.load_model(tmp_path / "straight" / "model.pt")
    resumed, _ = checkpoint.load_model(tmp_path / "killed" / "model.pt")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
