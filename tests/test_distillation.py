"""Distillation building blocks: the Word-KD loss and Seq-Inter target selection."""

import copy
import math

import pytest
import torch
from criterion_steps import step_with

from nmtkd.batching import ParallelData
from nmtkd.criteria.nll import LabelSmoothedNLL
from nmtkd.criteria.word_kd import WordKD, soft_cross_entropy
from nmtkd.errors import NmtkdError
from nmtkd.model import ModelConfig, Transformer
from nmtkd.seqinter import Candidate, read_nbest, select_closest, select_file, similarity_function


def test_soft_cross_entropy_matches_hand_computation():
    student = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    teacher = torch.tensor([[[0.0, math.log(3.0), 0.0], [5.0, 5.0, 5.0]]])
    mask = torch.tensor([[True, False]])  # the second position is padding
    # q = (0.2, 0.6, 0.2); log p = (1 - log(e+2), -log(e+2), -log(e+2))
    log_z = math.log(math.e + 2)
    expected = -(0.2 * (1 - log_z) + 0.6 * -log_z + 0.2 * -log_z)
    value = soft_cross_entropy(student, teacher, mask)
    assert float(value) == pytest.approx(expected, abs=1e-6)
    # temperature 2: softmaxes of z/2, scaled by 4
    q = torch.softmax(teacher[0, 0] / 2, -1)
    log_p = torch.log_softmax(student[0, 0] / 2, -1)
    assert float(soft_cross_entropy(student, teacher, mask, 2.0)) == pytest.approx(
        float(-(q * log_p).sum() * 4), abs=1e-6)


def word_kd(teacher, **parameters):
    criterion = WordKD(**parameters)
    criterion.bind(teacher_model=teacher)
    return criterion


def small_setup(seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=30, d_model=16, heads=2, encoder_layers=1, decoder_layers=1,
                      ffn_dim=32, dropout=0.0)
    student, teacher = Transformer(cfg), Transformer(cfg)
    data = ParallelData([[5, 6, 7], [8, 9]], [[10, 11], [12, 13, 14, 15]])
    return student, teacher, data.collate([0, 1])


def test_alpha_zero_equals_nll_and_alpha_combines_terms():
    student, teacher, batch = small_setup()
    with torch.no_grad():
        logits = student(batch.source, batch.target_in)
    nll = LabelSmoothedNLL(0.0)(step_with(logits, batch))
    assert float(word_kd(teacher, alpha=0.0)(step_with(logits, batch)).loss) == pytest.approx(
        float(nll.loss))
    with torch.no_grad():
        teacher_logits = teacher(batch.source, batch.target_in)
    mask = batch.target_out != 0
    distill = soft_cross_entropy(logits, teacher_logits, mask)
    out = word_kd(teacher, alpha=0.5, time_chunk=2)(step_with(logits, batch))  # chunked in time
    assert float(out.loss) == pytest.approx(float(0.5 * nll.loss + 0.5 * distill), rel=1e-5)
    assert out.normaliser == 8 and out.terms["nll"] == pytest.approx(nll.terms["nll"])
    assert out.terms["kd"] == pytest.approx(float(distill), rel=1e-5)  # logged separately


def test_gradients_flow_only_into_the_student():
    student, teacher, batch = small_setup()
    teacher_before = copy.deepcopy(teacher.state_dict())
    loss = word_kd(teacher, alpha=0.7)(step_with(student(batch.source, batch.target_in),
                                                  batch)).loss
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for n, p in student.named_parameters() if "embedding" in n)
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key])


def test_a_student_equal_to_its_teacher_gets_no_distillation_gradient():
    student, _, batch = small_setup()
    teacher = copy.deepcopy(student)
    logits = student(batch.source, batch.target_in)
    loss = word_kd(teacher, alpha=1.0)(step_with(logits, batch)).loss
    (grad,) = torch.autograd.grad(loss, logits)
    # d/dz of -Σ q log softmax(z) is softmax(z) - q = 0 when q = softmax(z)
    assert float(grad.abs().max()) < 1e-6


def test_word_kd_parameters_are_checked():
    student, _, batch = small_setup()
    with pytest.raises(NmtkdError, match="loss.alpha"):
        WordKD(alpha=1.5)
    with pytest.raises(NmtkdError, match="loss.time_chunk"):
        WordKD(time_chunk=0)
    logits = student(batch.source, batch.target_in)
    with pytest.raises(NmtkdError, match="needs the teacher's torch model"):
        WordKD()(step_with(logits, batch))  # used without bind()


def test_selection_picks_the_most_similar_candidate():
    similarity = similarity_function("bleu")
    reference = "a man is riding a red bicycle down the street"
    candidates = [Candidate(0, -1.0, "a man rides a bike"),
                  Candidate(1, -2.0, "a man is riding a red bicycle down the road"),
                  Candidate(2, -3.0, "the street")]
    assert select_closest(candidates, reference, similarity).rank == 1
    chrf = similarity_function("chrf")
    assert select_closest(candidates, reference, chrf).rank == 1


def test_selection_ties_go_to_the_better_model_score():
    similarity = similarity_function("bleu")
    same_text = [Candidate(0, -2.5, "x y z"), Candidate(1, -1.5, "x y z"),
                 Candidate(2, -0.5, "q r s")]
    assert select_closest(same_text, "x y z", similarity).rank == 1
    equal = [Candidate(0, -1.0, "x y z"), Candidate(1, -1.0, "x y z")]
    assert select_closest(equal, "x y z", similarity).rank == 0


def test_select_file_and_bad_nbest(tmp_path):
    (tmp_path / "nbest.tsv").write_text(
        "0\t0\t-0.1\tein Hund\n0\t1\t-0.9\tein großer Hund läuft\n"
        "1\t0\t-0.2\teine Katze schläft\n1\t1\t-0.3\tKatze\n")
    (tmp_path / "ref").write_text("ein großer Hund läuft schnell\neine Katze schläft\n")
    chosen = select_file(tmp_path / "nbest.tsv", tmp_path / "ref", tmp_path / "out")
    assert [c.rank for c in chosen] == [1, 0]
    assert (tmp_path / "out").read_text() == "ein großer Hund läuft\neine Katze schläft\n"
    (tmp_path / "bad.tsv").write_text("0\t0\tnot-a-number\ttext\n")
    with pytest.raises(NmtkdError, match="bad.tsv, line 1: id and rank must be integers"):
        read_nbest(tmp_path / "bad.tsv")
    (tmp_path / "short.tsv").write_text("0\t0\t-1.0\tein Hund\n")
    with pytest.raises(NmtkdError, match="n-best lists for 1 sentences.*has 2 lines"):
        select_file(tmp_path / "short.tsv", tmp_path / "ref", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
