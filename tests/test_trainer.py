import json
import os
import pickle
import subprocess
import sys

import pytest
import torch
from conftest import encode_pair, kill_9_after_save, make_trainer

from nmtkd import checkpoint
from nmtkd.errors import NmtkdError
from nmtkd.spm import Tokenizer
from nmtkd.trainer import inverse_sqrt_lr


def losses(workdir):
    records = [json.loads(line) for line in (workdir / "train_log.jsonl").read_text().splitlines()]
    by_update = {}
    for record in records:
        if "train_nll" in record:
            by_update[record["update"]] = record["train_nll"]
    return by_update


def assert_same_weights(first, second):
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name


def test_inverse_sqrt_schedule():
    assert inverse_sqrt_lr(1, 1e-3, 100) == pytest.approx(1e-5)
    assert inverse_sqrt_lr(100, 1e-3, 100) == pytest.approx(1e-3)
    assert inverse_sqrt_lr(400, 1e-3, 100) == pytest.approx(5e-4)


def test_same_seed_gives_same_losses_and_weights(synthetic, synthetic_spm, tmp_path):
    settings = {"max_updates": 30, "valid_interval": 15, "save_interval": 10}
    runs = []
    for name in ("a", "b"):
        trainer = make_trainer(synthetic, synthetic_spm, tmp_path / name, **settings)
        trainer.fit()
        runs.append(trainer)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert len(losses(tmp_path / "a")) == 30
    assert_same_weights(runs[0].model, runs[1].model)
    other = make_trainer(synthetic, synthetic_spm, tmp_path / "c", seed=2, **settings)
    other.fit()
    assert losses(tmp_path / "c") != losses(tmp_path / "a")


def test_resume_equals_uninterrupted_run(synthetic, synthetic_spm, tmp_path):
    # dropout on, so the restored RNG state matters
    settings = {"max_updates": 40, "valid_interval": 20, "save_interval": 10, "accumulate": 2,
                "model": {"dropout": 0.2}}
    straight = make_trainer(synthetic, synthetic_spm, tmp_path / "straight", **settings)
    straight.fit()

    interrupted = make_trainer(synthetic, synthetic_spm, tmp_path / "resumed", **settings)
    step = interrupted._step

    def crash_after_25(batches):
        if interrupted.state.update == 25:
            raise KeyboardInterrupt
        return step(batches)

    interrupted._step = crash_after_25
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    resumed = make_trainer(synthetic, synthetic_spm, tmp_path / "resumed", **settings)
    assert resumed.try_resume() and resumed.state.update == 20  # the last save before the crash
    resumed = make_trainer(synthetic, synthetic_spm, tmp_path / "resumed", **settings)
    resumed.fit()
    assert resumed.state.update == 40
    assert losses(tmp_path / "resumed") == losses(tmp_path / "straight")
    log_lines = (tmp_path / "resumed" / "train_log.jsonl").read_text().splitlines()
    assert len(log_lines) == len((tmp_path / "straight" / "train_log.jsonl").read_text()
                                 .splitlines())
    assert_same_weights(straight.model, resumed.model)


def test_a_finished_run_is_not_trained_again(synthetic, synthetic_spm, tmp_path):
    settings = {"max_updates": 20, "valid_interval": 10, "save_interval": 10}
    first = make_trainer(synthetic, synthetic_spm, tmp_path / "w", **settings)
    first.fit()
    first.write_outputs(tmp_path / "one.pt", tmp_path / "one.json")
    log_before = (tmp_path / "w" / "train_log.jsonl").read_text()
    again = make_trainer(synthetic, synthetic_spm, tmp_path / "w", **settings)
    state = again.fit()
    assert state.finished and state.update == 20 and state.stop_reason == "max_updates"
    assert (tmp_path / "w" / "train_log.jsonl").read_text() == log_before
    again.write_outputs(tmp_path / "two.pt", tmp_path / "two.json")
    one, _ = checkpoint.load_model(tmp_path / "one.pt")
    two, _ = checkpoint.load_model(tmp_path / "two.pt")
    assert_same_weights(one, two)
    # a changed config is a different run: it starts afresh
    other = make_trainer(synthetic, synthetic_spm, tmp_path / "w", max_updates=10,
                         valid_interval=10, save_interval=10)
    assert other.load_saved_state() is None


def test_kill_9_then_rerun_resumes_and_matches(synthetic, synthetic_spm, tmp_path):
    tokenizer = Tokenizer(synthetic_spm)
    train = encode_pair(tokenizer, *synthetic["train"], tmp_path)
    valid = encode_pair(tokenizer, *synthetic["valid"], tmp_path)
    settings = {"model": {"d_model": 64, "heads": 4, "encoder_layers": 2, "decoder_layers": 2,
                          "ffn_dim": 256},
                "training": {"max_tokens": 1500, "max_updates": 120, "valid_interval": 60,
                             "save_interval": 5, "device": "cpu", "warmup": 50}}

    def command(name):
        return [sys.executable, "-m", "nmtkd.cli", "train", "--train-src", str(train[0]),
                "--train-tgt", str(train[1]), "--valid-src", str(valid[0]),
                "--valid-tgt", str(valid[1]), "--valid-ref", str(synthetic["valid"][1]),
                "--spm", str(synthetic_spm), "--settings", json.dumps(settings),
                "--workdir", str(tmp_path / name / "work"),
                "--output", str(tmp_path / name / "model.pt"),
                "--summary", str(tmp_path / name / "training.json"), "--threads", "1"]

    subprocess.run(command("straight"), check=True, capture_output=True)
    saved = kill_9_after_save(command("killed"), tmp_path / "killed" / "work" / "state.pt", 10)
    killed_at = saved["state"]["update"]
    assert 10 <= killed_at < 120
    assert not (tmp_path / "killed" / "model.pt").exists()  # the final output only at the end
    subprocess.run(command("killed"), check=True, capture_output=True)
    straight, _ = checkpoint.load_model(tmp_path / "straight" / "model.pt")
    resumed, _ = checkpoint.load_model(tmp_path / "killed" / "model.pt")
    assert_same_weights(straight, resumed)
    summary = json.loads((tmp_path / "killed" / "training.json").read_text())
    assert summary["updates"] == 120


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoints_refuse_arbitrary_pickles(tmp_path, capfd):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo unsafe",))

    path = tmp_path / "evil.pt"
    with path.open("wb") as handle:
        pickle.dump({"model": Payload()}, handle)
    with pytest.raises(NmtkdError, match="evil.pt: cannot load checkpoint"):
        checkpoint.load(path)
    assert "unsafe" not in capfd.readouterr().out  # the payload never ran


def test_best_checkpoint_and_averaging(synthetic, synthetic_spm, tmp_path):
    trainer = make_trainer(synthetic, synthetic_spm, tmp_path / "w", max_updates=60,
                           valid_interval=20, average_last=2)
    trainer.fit()
    assert trainer.state.recent == [40, 60]
    assert sorted(p.name for p in (tmp_path / "w").glob("snapshot_*.pt")) == [
        "snapshot_40.pt", "snapshot_60.pt"]
    from nmtkd.trainer import average_checkpoints

    averaged = average_checkpoints([tmp_path / "w" / "snapshot_40.pt",
                                    tmp_path / "w" / "snapshot_60.pt"])
    first, _ = checkpoint.load_model(tmp_path / "w" / "snapshot_40.pt")
    second, _ = checkpoint.load_model(tmp_path / "w" / "snapshot_60.pt")
    name = "decoder_norm.weight"
    expected = (first.state_dict()[name] + second.state_dict()[name]) / 2
    torch.testing.assert_close(averaged.state_dict()[name], expected)
    summary = trainer.write_outputs(tmp_path / "model.pt", tmp_path / "training.json")
    assert summary["updates"] == 60
    assert [h["update"] for h in summary["history"]] == [20, 40, 60]
    # the shipped model is whichever of best and average validates better, and says which
    best_bleu = max(h["valid_bleu"] for h in summary["history"])
    assert summary["final_valid"]["valid_bleu"] >= best_bleu
    assert summary["final_model"] in ("average of updates [40, 60]",
                                      f"best checkpoint (update {summary['best_update']})")
    shipped, meta = checkpoint.load_model(tmp_path / "model.pt")
    assert meta["training"]["final_model"] == summary["final_model"]
