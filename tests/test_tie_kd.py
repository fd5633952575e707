"""TIE-KD (ranking loss, iterative KD) and the soft-target variants of Zhang et al. 2023, against
values worked out by hand from the reference code (../shared/docs/kd_methods.md §5.2, §5.4,
§5.5)."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_resumes_bit_identically, train_command
from criterion_steps import FixedTeacher, step_with

from nmtkd.batching import Batch
from nmtkd.criteria import TEACHER_MODEL, TEACHER_SIGNALS, TrainingStep, build_criterion
from nmtkd.criteria.soft_targets import variant_cross_entropy
from nmtkd.criteria.tie_kd import ranking_loss
from nmtkd.errors import NmtkdError
from nmtkd.model import ModelConfig, Transformer
from nmtkd.spm import BOS_ID, EOS_ID, PAD_ID

log = math.log


# ---- the hierarchical ranking loss ---------------------------------------------------------------
def test_ranking_loss_both_levels_by_hand():
    q = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])  # teacher top-3: tokens 0, 1, 2
    p = torch.tensor([0.1, 0.3, 0.2, 0.25, 0.15])  # student top-3: tokens 1, 3, 2
    # level 1: p(1) − p(0) = 0.2 and p(2) − p(0) = 0.1
    # level 2, teacher token 0 (q .5): above 1, 3 and 2, violated by .2, .15, .1 → .45;
    #   token 1 (q .2): 1 itself is not strictly below, 3 and 2 are but p(1) is larger → 0;
    #   token 2 (q .15): above 3 (q .1), violated by .25 − .2 = .05; 2 itself and 1 are not
    assert float(ranking_loss(p, q, 3)) == pytest.approx(0.3 + 0.45 + 0.05)


def test_ranking_loss_is_zero_for_a_student_that_ranks_like_the_teacher():
    q = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])
    p = torch.tensor([0.6, 0.2, 0.1, 0.06, 0.04])
    assert float(ranking_loss(p, q, 3)) == 0.0


def test_pairs_the_teacher_does_not_order_strictly_contribute_nothing():
    q = torch.tensor([0.4, 0.4, 0.2])  # tokens 0 and 1 tie for the teacher's top-1
    p = torch.tensor([0.2, 0.7, 0.1])  # the student prefers 1
    # whichever of the tied tokens is t_1, the pair (t_1, 1) is not strictly ordered by q;
    # counted anyway it would cost p(1) − p(0) = 0.5
    assert float(ranking_loss(p, q, 1)) == 0.0
    # a batch of positions: the loss is per position
    both = ranking_loss(torch.stack([p, torch.tensor([0.1, 0.2, 0.7])]),
                        torch.stack([q, torch.tensor([0.7, 0.2, 0.1])]), 1)
    assert both.tolist() == pytest.approx([0.0, 0.6])  # second: q(0) > q(2), p(2) − p(0)


def test_ranking_loss_gradient_reaches_the_student_only():
    q = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05], requires_grad=True)
    p = torch.tensor([0.1, 0.3, 0.2, 0.25, 0.15], requires_grad=True)
    ranking_loss(p, q, 3).backward()
    assert q.grad is None
    # d/dp: level 1 gives +1 to p(1), p(2) and −2 to p(0); level 2 gives −3 to p(0),
    # +1 to p(1), p(3), p(2) from token 0 and, from token 2, +1 to p(3), −1 to p(2)
    assert p.grad.tolist() == pytest.approx([-5.0, 2.0, 1.0, 2.0, 0.0])


# ---- the soft-target variants ------------------------------------------------------------------
P = [0.4, 0.3, 0.2, 0.1]
Q = [0.6, 0.25, 0.1, 0.05]  # the teacher's top-1 is token 0


def variant(name: str, gold: int, topk: int = 5, q=Q, support=None) -> float:
    log_p = torch.tensor([[P]]).log()
    ids = None if support is None else torch.tensor([[support]])
    value = variant_cross_entropy(log_p, torch.tensor([[q]]), ids, torch.tensor([[gold]]),
                                  name, topk)
    return float(value[0, 0])


def test_soft_target_variants_by_hand_on_the_full_vocabulary():
    cross_entropy = -sum(q * log(p) for q, p in zip(Q, P, strict=True))
    assert variant("vanilla", gold=1) == pytest.approx(cross_entropy)
    # (b) only q(t*)·log p(t*), the rest of the mass dropped
    assert variant("without_correlation", gold=1) == pytest.approx(-0.6 * log(0.4))
    # (c) q(t*) moves onto the gold token: q' = (0, .85, .1, .05)
    assert variant("without_top1", gold=1) == pytest.approx(
        -(0.85 * log(0.3) + 0.1 * log(0.2) + 0.05 * log(0.1)))
    assert variant("without_top1", gold=0) == pytest.approx(cross_entropy)  # t* = gold
    assert variant("topk_info", gold=1, topk=2) == pytest.approx(
        -(0.6 * log(0.4) + 0.25 * log(0.3)))


def test_soft_target_variants_on_cached_top_k_entries():
    # the cache holds tokens 1, 0, 3 (q renormalised over them); the gold token 2 is not there
    support, q = [1, 0, 3], [0.3, 0.6, 0.1]
    assert variant("without_top1", gold=2, q=q, support=support) == pytest.approx(
        -(0.3 * log(0.3) + 0.1 * log(0.1) + 0.6 * log(0.2)))
    assert variant("without_correlation", gold=2, q=q, support=support) == pytest.approx(
        -0.6 * log(0.4))
    assert variant("topk_info", gold=2, topk=2, q=q, support=support) == pytest.approx(
        -(0.6 * log(0.4) + 0.3 * log(0.3)))


def test_soft_target_kd_mixes_smoothed_nll_and_the_variant_term():
    logits = torch.tensor([[[0.0, 2.0, 0.0], [1.0, 0.0, 0.0]]], requires_grad=True)
    target = torch.tensor([[1, 2]])
    batch = Batch(source=torch.zeros(1, 1, dtype=torch.long), target_in=target.clone(),
                  target_out=target, indices=[0], lines=[0])
    teacher = torch.tensor([[[3.0, 1.0, 0.0], [0.0, 0.0, 2.0]]])
    criterion = build_criterion({"name": "soft_target_kd", "variant": "without_correlation"})
    criterion.bind(teacher_model=FixedTeacher(teacher))
    out = criterion(step_with(logits, batch))
    log_p = F.log_softmax(logits.detach(), dim=-1)[0]
    q = F.softmax(teacher, dim=-1)[0]
    smoothed = sum(0.9 * -log_p[j, g] - 0.1 * log_p[j].mean() for j, g in enumerate((1, 2)))
    kept = -(q[0, 0] * log_p[0, 0] + q[1, 2] * log_p[1, 2])  # each position's top-1 only
    expected = float(0.5 * smoothed + 0.5 * kept)
    assert float(out.loss.detach()) == pytest.approx(expected, abs=1e-5)


def test_criteria_needs_and_config_errors():
    assert build_criterion({"name": "tie_kd"}).needs == {TEACHER_MODEL}
    assert build_criterion({"name": "soft_target_kd"}).needs == {TEACHER_MODEL}
    cached = build_criterion({"name": "soft_target_kd", "teacher_topk": 8})
    assert cached.needs == {TEACHER_SIGNALS} and cached.signals_k == 8
    with pytest.raises(NmtkdError, match="loss.variant must be one of vanilla, "):
        build_criterion({"name": "soft_target_kd", "variant": "no_top1"})
    with pytest.raises(NmtkdError, match=r"loss.topk \(9\) cannot exceed loss.teacher_topk"):
        build_criterion({"name": "soft_target_kd", "variant": "topk_info", "topk": 9,
                         "teacher_topk": 8})
    with pytest.raises(NmtkdError, match="loss.iterations must be a whole number of at least "
                       "1, got 0"):
        build_criterion({"name": "tie_kd", "iterations": 0})
    with pytest.raises(NmtkdError, match="loss.topk must be a whole number of at least 1, got "
                       "2.5"):
        build_criterion({"name": "tie_kd", "topk": 2.5})
    with pytest.raises(NmtkdError, match="loss.ranking must be true or false"):
        build_criterion({"name": "tie_kd", "ranking": "yes"})


# ---- iterative KD on real (tiny) models --------------------------------------------------------
def tiny_model(seed: int) -> Transformer:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=11, d_model=16, heads=2, encoder_layers=1, decoder_layers=2,
                         ffn_dim=32, dropout=0.0)
    return Transformer(config)


def tiny_batch() -> Batch:
    source = torch.tensor([[5, 6, 7, EOS_ID], [8, 9, EOS_ID, PAD_ID]])
    target_out = torch.tensor([[4, 5, 6, EOS_ID], [7, EOS_ID, PAD_ID, PAD_ID]])
    target_in = torch.tensor([[BOS_ID, 4, 5, 6], [BOS_ID, 7, EOS_ID, PAD_ID]])
    return Batch(source=source, target_in=target_in, target_out=target_out, indices=[0, 1],
                 lines=[0, 1])


def test_each_pass_reads_the_previous_pass_argmax_and_one_shared_encoder_output(monkeypatch):
    model, batch = tiny_model(1), tiny_batch()
    calls = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda source: calls.append(1) or encode(source))
    passes = model(batch.source, batch.target_in, passes=3)
    assert len(calls) == 1 and len(passes) == 3
    assert torch.equal(passes[0][0], batch.target_in)
    assert torch.equal(passes[0][1], model(batch.source, batch.target_in))
    for previous, (decoder_in, logits) in zip(passes, passes[1:], strict=False):
        predicted = previous[1].argmax(dim=-1)
        assert decoder_in[:, 0].tolist() == [BOS_ID, BOS_ID]
        assert torch.equal(decoder_in[:, 1:], predicted[:, :-1])
        assert torch.equal(logits, model(batch.source, decoder_in))
    encoder = model.encoder_layers[0].attention.qkv.weight
    for _, logits in passes:  # every pass's output depends on the shared encoder
        gradient, = torch.autograd.grad(logits.square().sum(), encoder, retain_graph=True)
        assert gradient.abs().sum() > 0


def tie(**options):
    return build_criterion({"name": "tie_kd", **options})


def test_one_pass_without_ranking_is_live_word_kd_and_ranking_adds_alpha_times_its_sum():
    student, teacher, batch = tiny_model(1), tiny_model(2), tiny_batch()
    step = TrainingStep(model=student, batch=batch, update=1)
    word_kd = build_criterion({"name": "word_kd", "alpha": 0.5, "label_smoothing": 0.1,
                               "teacher_topk": 0})
    plain, ranked = tie(iterations=1, ranking=False), tie(iterations=1)
    for criterion in (word_kd, plain, ranked):
        criterion.bind(teacher_model=teacher)
    expected = float(word_kd(step).loss.detach())
    assert float(plain(step).loss.detach()) == pytest.approx(expected, rel=1e-6)
    mask = batch.target_out != PAD_ID
    p = F.softmax(student(batch.source, batch.target_in), dim=-1)
    q = F.softmax(teacher(batch.source, batch.target_in), dim=-1)
    rank = float(ranking_loss(p, q, 5)[mask].sum().detach())
    assert rank > 0
    out = ranked(step)
    assert float(out.loss.detach()) == pytest.approx(expected + 0.5 * rank, rel=1e-6)
    assert out.terms["rank"] == pytest.approx(rank, rel=1e-6)


def test_three_passes_average_the_kd_terms_against_the_teacher_on_the_same_inputs():
    student, teacher, batch = tiny_model(1), tiny_model(2), tiny_batch()
    criterion = tie(iterations=3, time_chunk=2)  # slices of 2 positions: the loop is exercised
    criterion.bind(teacher_model=teacher)
    out = criterion(TrainingStep(model=student, batch=batch, update=1))
    mask = batch.target_out != PAD_ID
    kd_terms = []
    for decoder_in, logits in student(batch.source, batch.target_in, passes=3):
        log_p = F.log_softmax(logits, dim=-1)
        q = F.softmax(teacher(batch.source, decoder_in), dim=-1)
        per_position = -(q * log_p).sum(-1) + ranking_loss(log_p.exp(), q, 5)
        kd_terms.append(float(per_position[mask].sum()))
    log_p = F.log_softmax(student(batch.source, batch.target_in), dim=-1)
    gold = -log_p.gather(-1, batch.target_out[..., None]).squeeze(-1)
    smoothed = float((0.9 * gold - 0.1 * log_p.mean(-1))[mask].sum())
    expected = 0.5 * smoothed + 0.5 * sum(kd_terms) / 3
    assert float(out.loss.detach()) == pytest.approx(expected, rel=1e-5)
    assert out.normaliser == 6 and out.terms["nll"] == pytest.approx(float(gold[mask].sum()),
                                                                     rel=1e-5)


def test_tie_kd_resumes_bit_identically_after_kill_9(synthetic, synthetic_spm, trained_tiny,
                                                     tmp_path):
    settings = {"model": {"d_model": 32, "heads": 4, "encoder_layers": 1, "decoder_layers": 1,
                          "ffn_dim": 64, "dropout": 0.1},
                "training": {"max_tokens": 800, "max_updates": 30, "valid_interval": 30,
                             "save_interval": 5, "device": "cpu", "warmup": 10,
                             "loss": {"name": "tie_kd", "iterations": 2}}}

    def command(name):
        return train_command(synthetic, synthetic_spm, trained_tiny, settings, tmp_path / name)

    assert_resumes_bit_identically(command, tmp_path)
