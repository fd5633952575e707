"""Shared fixtures: a synthetic corpus, its SentencePiece model and a briefly trained tiny model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from workflow_config import SHARED_MULTI30K  # noqa: E402

from nmtkd.batching import ParallelData  # noqa: E402
from nmtkd.spm import Tokenizer, train_spm  # noqa: E402
from nmtkd.synthetic import write_corpus  # noqa: E402
from nmtkd.textio import read_lines, write_lines  # noqa: E402
from nmtkd.trainer import TrainConfig, Trainer  # noqa: E402

TINY = {"d_model": 64, "heads": 4, "encoder_layers": 2, "decoder_layers": 2, "ffn_dim": 256,
        "dropout": 0.0}


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    directory = tmp_path_factory.mktemp("synthetic")
    return write_corpus(directory, {"train": 3000, "valid": 200, "test": 200})


@pytest.fixture(scope="session")
def synthetic_spm(synthetic, tmp_path_factory) -> Path:
    model = tmp_path_factory.mktemp("spm") / "spm.model"
    train_spm(list(synthetic["train"]), model, vocab_size=120)
    return model


def encode_pair(tokenizer: Tokenizer, src: Path, tgt: Path, directory: Path) -> tuple[Path, Path]:
    out = []
    for path in (src, tgt):
        target = directory / (path.name + ".spm")
        write_lines(target, [" ".join(p) for p in tokenizer.encode_pieces(read_lines(path))])
        out.append(target)
    return out[0], out[1]


def make_trainer(synthetic, spm_model: Path, workdir: Path, model: dict | None = None,
                 init_model=None, identity: dict | None = None, criterion=None,
                 **overrides) -> Trainer:
    from nmtkd.model import ModelConfig

    tokenizer = Tokenizer(spm_model)
    workdir.mkdir(parents=True, exist_ok=True)
    train_files = encode_pair(tokenizer, *synthetic["train"], workdir)
    valid_files = encode_pair(tokenizer, *synthetic["valid"], workdir)
    train = ParallelData.from_piece_files(*train_files, tokenizer)
    valid = ParallelData.from_piece_files(*valid_files, tokenizer)
    settings = {"max_tokens": 1500, "lr": 0.002, "warmup": 100, "max_updates": 400,
                "valid_interval": 200, "valid_bleu_sentences": 100, "save_interval": 50,
                "device": "cpu", "threads": 2, "average_last": 0, **overrides}
    model_cfg = ModelConfig(vocab_size=len(tokenizer), **{**TINY, **(model or {})})
    return Trainer(model_cfg, TrainConfig(**settings), train, valid,
                   read_lines(synthetic["valid"][1]), tokenizer, workdir, init_model=init_model,
                   identity=identity, criterion=criterion)


@pytest.fixture(scope="session")
def trained_tiny(synthetic, synthetic_spm, tmp_path_factory) -> Path:
    """A tiny model trained for a minute on the synthetic task (its outputs are meaningful)."""
    workdir = tmp_path_factory.mktemp("trained")
    trainer = make_trainer(synthetic, synthetic_spm, workdir / "work", max_updates=500,
                           valid_interval=250)
    trainer.fit()
    trainer.write_outputs(workdir / "model.pt", workdir / "training.json")
    return workdir / "model.pt"


def require_multi30k() -> Path:
    if not (SHARED_MULTI30K / "train.en.gz").is_file():
        pytest.skip(f"Multi30k mirror not found at {SHARED_MULTI30K}")
    return SHARED_MULTI30K


def train_command(synthetic, spm_model: Path, teacher: Path, settings: dict,
                  directory: Path) -> list[str]:
    """`nmtkd train` on the synthetic task with a live teacher, writing under `directory`."""
    import json

    tokenizer = Tokenizer(spm_model)
    directory.mkdir(parents=True, exist_ok=True)
    train = encode_pair(tokenizer, *synthetic["train"], directory)
    valid = encode_pair(tokenizer, *synthetic["valid"], directory)
    return [sys.executable, "-m", "nmtkd.cli", "train", "--train-src", str(train[0]),
            "--train-tgt", str(train[1]), "--valid-src", str(valid[0]),
            "--valid-tgt", str(valid[1]), "--valid-ref", str(synthetic["valid"][1]),
            "--spm", str(spm_model), "--teacher", str(teacher),
            "--settings", json.dumps(settings), "--workdir", str(directory / "work"),
            "--output", str(directory / "model.pt"),
            "--summary", str(directory / "training.json"), "--threads", "1"]


def kill_9_after_save(command: list[str], state: Path, update: int) -> dict:
    """Start `command` in its own process group, SIGKILL the whole group once `state` records
    at least `update` updates, and return the saved state it left behind."""
    import os
    import signal
    import subprocess
    import time

    from nmtkd import checkpoint

    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if state.is_file() and checkpoint.load(state)["state"]["update"] >= update:
            break
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return checkpoint.load(state)


def assert_resumes_bit_identically(command, directory: Path) -> None:
    """`command(name)` trains 30 updates into directory/name: a straight run, and one killed
    (kill -9) after update 10 then rerun, end with the same weights."""
    import subprocess

    import torch

    from nmtkd import checkpoint

    subprocess.run(command("straight"), check=True, capture_output=True)
    saved = kill_9_after_save(command("killed"), directory / "killed" / "work" / "state.pt", 10)
    assert 10 <= saved["state"]["update"] < 30
    subprocess.run(command("killed"), check=True, capture_output=True)
    straight, _ = checkpoint.load_model(directory / "straight" / "model.pt")
    resumed, _ = checkpoint.load_model(directory / "killed" / "model.pt")
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
