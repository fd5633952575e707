"""Selective KD (batch- and global-level) and Annealing KD against values worked out by hand
from the papers' reference code (../shared/docs/kd_methods.md §2, §4)."""

import json
import math
import subprocess

import pytest
import torch
from conftest import kill_9_after_save, make_trainer, train_command
from criterion_steps import FixedTeacher, step_with

from nmtkd import checkpoint
from nmtkd.batching import Batch
from nmtkd.criteria import TEACHER_MODEL, TEACHER_SIGNALS, build_criterion
from nmtkd.criteria.annealing_kd import annealing_factor
from nmtkd.criteria.selective_kd import push_first
from nmtkd.errors import NmtkdError
from nmtkd.spm import PAD_ID

T, F_ = True, False


def selective(**options):
    return build_criterion({"name": "selective_kd", **options})


# ---- Selective KD: which tokens are distilled ---------------------------------------------------
def test_batch_level_takes_the_hardest_ceil_rn_tokens_ties_included():
    difficulty = torch.tensor([[5.0, 1.0, 3.0, 3.0], [2.0, 3.0, 9.0, 0.0]])
    non_pad = torch.tensor([[T, T, T, T], [T, T, F_, F_]])  # the 9 is padding: never counts
    # non-pad values 5 3 3 3 2 1 (N = 6); ⌈0.5·6⌉ = 3: the 3rd largest is 3, and all three 3s
    # are kept (ties at the threshold): 4 tokens
    mask, threshold = selective(rate=0.5).select(difficulty, non_pad)
    assert float(threshold) == 3.0
    assert mask.tolist() == [[T, F_, T, T], [F_, T, F_, F_]]
    # ⌈0.1·6⌉ = 1: the hardest alone; ⌈1.0·6⌉ = 6: every non-pad token
    assert selective(rate=0.1).select(difficulty, non_pad)[0].sum() == 1
    assert selective(rate=1.0).select(difficulty, non_pad)[0].tolist() == non_pad.tolist()


def test_the_queue_pushes_first_and_evicts_the_oldest_batch_size_entries():
    queue = torch.zeros(0)
    for batch, expected in (([1, 2], [1, 2]),  # 0 + 2 < 5
                            ([3, 4], [1, 2, 3, 4]),  # 2 + 2 < 5
                            ([5], [2, 3, 4, 5]),  # 4 + 1 = 5: the oldest one leaves first
                            ([6, 7], [4, 5, 6, 7])):  # the two oldest leave
        queue = push_first(queue, torch.tensor(batch, dtype=torch.float32), capacity=5)
        assert queue.tolist() == expected
    assert push_first(torch.tensor([1.0]), torch.tensor([2.0, 3.0, 4.0]), 3).tolist() == [
        2.0, 3.0, 4.0]  # a batch larger than the queue replaces it


def test_global_level_thresholds_over_the_queue_including_the_batch():
    criterion = selective(strategy="global", rate=0.5, queue_size=5)
    for batch in ([4.0, 5.0], [6.0, 7.0]):  # queue 4 5 6 7
        criterion.select(torch.tensor([batch]), torch.tensor([[T, T]]))
    # an easy batch: queue 6 7 2 3, ⌈0.5·4⌉ = 2nd largest = 6: nothing of it is distilled,
    # where the batch level would distil its hardest token
    mask, threshold = criterion.select(torch.tensor([[2.0, 3.0]]), torch.tensor([[T, T]]))
    assert criterion.queue.tolist() == [6.0, 7.0, 2.0, 3.0]
    assert float(threshold) == 6.0 and mask.tolist() == [[F_, F_]]
    assert selective(rate=0.5).select(torch.tensor([[2.0, 3.0]]),
                                      torch.tensor([[T, T]]))[0].tolist() == [[F_, T]]
    assert criterion.state_dict()["queue"].tolist() == [6.0, 7.0, 2.0, 3.0]
    restored = selective(strategy="global", rate=0.5, queue_size=5)
    restored.load_state_dict(criterion.state_dict())
    assert restored.queue.tolist() == [6.0, 7.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="keeps no state"):
        selective().load_state_dict({"queue": torch.zeros(1)})


# ---- Selective KD: the loss ----------------------------------------------------------------------
class FixedSignals:
    """Teacher signals that return the given top-k ids and logits for any lines."""

    def __init__(self, ids, logits):
        self.ids, self.logits = ids, logits

    def lookup(self, lines, width, k, device):
        return self.ids[:, :width, :k], self.logits[:, :width, :k]


def test_loss_is_smoothed_nll_everywhere_plus_teacher_ce_on_the_selected_tokens():
    # two target tokens over a vocabulary of 3; gold 1 and 2
    logits = torch.tensor([[[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]]], requires_grad=True)
    target = torch.tensor([[1, 2]])
    batch = Batch(source=torch.zeros(1, 1, dtype=torch.long), target_in=target.clone(),
                  target_out=target, indices=[0], lines=[0])
    ids = torch.tensor([[[1, 0], [0, 2]]])
    teacher = torch.tensor([[[1.0, 0.0], [math.log(3.0), 0.0]]])  # q2 = (3/4, 1/4)
    criterion = selective(rate=0.5, teacher_topk=2, label_smoothing=0.1)
    criterion.bind(teacher_signals=FixedSignals(ids, teacher))
    out = criterion(step_with(logits, batch))
    # by hand: log p of the first position (2, 0, 0) and the second (1, 0, 0)
    z1 = math.log(math.exp(2) + 2)
    z2 = math.log(math.exp(1) + 2)
    log_p1 = [0 - z1, 2 - z1, 0 - z1]
    log_p2 = [1 - z2, 0 - z2, 0 - z2]
    d1, d2 = -log_p1[1], -log_p2[2]  # difficulties: d2 > d1, so ⌈0.5·2⌉ = 1 selects token 2
    assert d2 > d1
    smoothed = [0.9 * d + 0.1 * -sum(lp) / 3 for d, lp in ((d1, log_p1), (d2, log_p2))]
    teacher_ce = -(0.75 * log_p2[0] + 0.25 * log_p2[2])
    assert float(out.loss.detach()) == pytest.approx(sum(smoothed) + teacher_ce, abs=1e-5)
    assert out.normaliser == 2
    assert out.terms["selected"] == 1.0 and out.terms["threshold"] == pytest.approx(2 * d2)
    assert out.terms["kd"] == pytest.approx(teacher_ce, abs=1e-5)
    alpha = selective(rate=0.5, teacher_topk=2, label_smoothing=0.1, alpha=0.3)
    alpha.bind(teacher_signals=FixedSignals(ids, teacher))
    assert float(alpha(step_with(logits, batch)).loss.detach()) == pytest.approx(
        0.7 * sum(smoothed) + 0.3 * teacher_ce, abs=1e-5)


def test_selective_kd_needs_and_config_errors():
    assert selective().needs == {TEACHER_SIGNALS} and selective().signals_k == 8
    assert selective(teacher_topk=0).needs == {TEACHER_MODEL}
    with pytest.raises(NmtkdError, match="loss.strategy must be one of batch, global"):
        selective(strategy="sentence")
    with pytest.raises(NmtkdError, match="loss.rate must be in"):
        selective(rate=0.0)


# ---- Annealing KD --------------------------------------------------------------------------------
def test_phi_climbs_in_equal_blocks_and_ends_at_one():
    # 600 updates, τ_max 10: blocks of 60 updates, Φ = b/10 from the first to the last of each
    for block in range(1, 11):
        first, last = (block - 1) * 60 + 1, block * 60
        assert annealing_factor(first, 600, 10) == block / 10
        assert annealing_factor(last, 600, 10) == block / 10
    # 100 updates, τ_max 7: c = 1 + ⌊(u−1)·7/100⌋ steps up where (u−1)·7 passes 100·k
    steps = [u for u in range(2, 101)
             if annealing_factor(u, 100, 7) != annealing_factor(u - 1, 100, 7)]
    assert steps == [16, 30, 44, 59, 73, 87]  # u − 1 = ⌈100·k/7⌉ for k = 1..6
    assert annealing_factor(100, 100, 7) == 1.0
    with pytest.raises(NmtkdError, match="needs the run's max_updates"):
        annealing_factor(1, 0, 10)


def test_stage_one_regresses_onto_the_scaled_teacher_logits():
    logits = torch.tensor([[[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]]], requires_grad=True)
    target = torch.tensor([[1, PAD_ID]])  # the second position is padding
    batch = Batch(source=torch.zeros(1, 1, dtype=torch.long), target_in=target.clone(),
                  target_out=target, indices=[0])
    teacher = torch.tensor([[[2.0, 0.0, 4.0], [5.0, 5.0, 5.0]]])
    criterion = build_criterion({"name": "annealing_kd", "max_temperature": 2})
    criterion.bind(teacher_model=FixedTeacher(teacher))
    step = step_with(logits, batch, update=1)
    step.max_updates = 10  # update 1 of 10, τ_max 2: Φ = 1/2; target (1, 0, 2)
    out = criterion(step)
    assert float(out.loss.detach()) == pytest.approx(0 + 4 + 4)  # Σ_v (z − Φ·z_T)², one token
    assert out.normaliser == 1 and out.terms["phi"] == 0.5
    out.loss.backward()
    assert logits.grad[0, 0].tolist() == [0.0, 4.0, -4.0] and logits.grad[0, 1].abs().sum() == 0
    log_z = math.log(math.e + math.exp(2) + 1)
    assert out.terms["nll"] == pytest.approx(log_z - 2)  # logged, not trained on
    late = step_with(logits.detach(), batch, update=6)
    late.max_updates = 10  # the second block: Φ = 1, target (2, 0, 4)
    mean = build_criterion({"name": "annealing_kd", "max_temperature": 2, "reduction": "mean"})
    mean.bind(teacher_model=FixedTeacher(teacher))
    assert float(mean(late).loss) == pytest.approx((1 + 4 + 16) / 3)


def test_annealing_kd_needs_and_config_errors():
    assert build_criterion({"name": "annealing_kd"}).needs == {TEACHER_MODEL}
    top = build_criterion({"name": "annealing_kd", "teacher_topk": 8})
    assert top.needs == {TEACHER_SIGNALS} and top.signals_k == 8
    with pytest.raises(NmtkdError, match="loss.reduction must be one of sum, mean"):
        build_criterion({"name": "annealing_kd", "reduction": "max"})


def test_stage_two_starts_from_the_best_stage_one_weights(synthetic, synthetic_spm,
                                                           trained_tiny, tmp_path):
    teacher, _ = checkpoint.load_model(trained_tiny)
    criterion = build_criterion({"name": "annealing_kd", "max_temperature": 2})
    criterion.bind(teacher_model=teacher)
    stage_one = make_trainer(synthetic, synthetic_spm, tmp_path / "one", max_updates=30,
                             valid_interval=10, average_last=0, criterion=criterion,
                             loss={"name": "annealing_kd", "max_temperature": 2})
    stage_one.fit()
    stage_one.write_outputs(tmp_path / "one.pt", tmp_path / "one.json")
    summary = json.loads((tmp_path / "one.json").read_text())
    assert summary["criterion"] == "annealing_kd" and "mse" in summary["train_terms"]
    best, _ = checkpoint.load_model(tmp_path / "one" / "best.pt")
    final, _ = checkpoint.load_model(tmp_path / "one.pt")
    stage_two = make_trainer(synthetic, synthetic_spm, tmp_path / "two", init_model=final,
                             max_updates=1, identity={"init": "stage one"})
    for key, value in best.state_dict().items():
        assert torch.equal(stage_two.model.state_dict()[key], value), key
    assert stage_two.criterion.name == "nll" and stage_two.state.update == 0


# ---- resume --------------------------------------------------------------------------------------
def test_global_selection_resumes_bit_identically_after_kill_9(synthetic, synthetic_spm,
                                                                trained_tiny, tmp_path):
    loss = {"name": "selective_kd", "strategy": "global", "queue_size": 3000,
            "teacher_topk": 0}
    settings = {"model": {"d_model": 32, "heads": 4, "encoder_layers": 1, "decoder_layers": 1,
                          "ffn_dim": 64},
                "training": {"max_tokens": 800, "max_updates": 40, "valid_interval": 40,
                             "save_interval": 5, "device": "cpu", "warmup": 10, "loss": loss}}

    def command(name):
        return train_command(synthetic, synthetic_spm, trained_tiny, settings, tmp_path / name)

    subprocess.run(command("straight"), check=True, capture_output=True)
    saved = kill_9_after_save(command("killed"), tmp_path / "killed" / "work" / "state.pt", 10)
    assert 10 <= saved["state"]["update"] < 40
    assert saved["criterion"][0]["queue"].numel() > 0  # killed with a non-empty queue
    subprocess.run(command("killed"), check=True, capture_output=True)
    straight, _ = checkpoint.load_model(tmp_path / "straight" / "model.pt")
    resumed, _ = checkpoint.load_model(tmp_path / "killed" / "model.pt")
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    terms = json.loads((tmp_path / "straight" / "training.json").read_text())["train_terms"]
    assert 0.0 < terms["selected"] <= 1.0 and terms["threshold"] > 0.0
