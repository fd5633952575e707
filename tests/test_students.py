"""Students: top-k Word-KD, corpus variants, fine-tuning, Top-1 Agreement, the comparison
tables, student config validation, and the whole chain on the tiny config."""

from __future__ import annotations

import base64
import json
import math
import re
from collections import Counter
from html.parser import HTMLParser

import pandas as pd
import pytest
import torch
from conftest import make_trainer, require_multi30k
from criterion_steps import step_with
from workflow_config import (
    assert_plan_fails,
    base_config,
    multi30k_subset,
    run_snakemake,
    tiny_config,
    with_default_students,
)

from nmtkd.agreement import agreement_files
from nmtkd.batching import ParallelData
from nmtkd.checkpoint import load_model
from nmtkd.compare import write_comparison
from nmtkd.corpora import build_corpus, expand_nbest
from nmtkd.criteria.word_kd import WordKD, topk_cross_entropy
from nmtkd.errors import NmtkdError
from nmtkd.model import ModelConfig, Transformer
from nmtkd.spm import BOS_ID, EOS_ID, Tokenizer
from nmtkd.teacher_signals import TeacherSignals, write_signals
from nmtkd.textio import read_lines

CPU = torch.device("cpu")


def tiny_pair(seed=0, vocab=30):
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=vocab, d_model=16, heads=2, encoder_layers=1,
                      decoder_layers=1, ffn_dim=32, dropout=0.0)
    data = ParallelData([[5, 6, 7], [8, 9], [10, 11, 12, 13]],
                        [[10, 11], [12, 13, 14, 15], [7]])
    return Transformer(cfg), Transformer(cfg), data


# ---- top-k Word-KD -------------------------------------------------------------------------------
def test_topk_cross_entropy_matches_hand_computation():
    student = torch.tensor([[[1.0, 0.0, 0.0]]])
    ids = torch.tensor([[[1, 0]]])
    teacher = torch.tensor([[[math.log(3.0), 0.0]]])  # top-2 renormalised: q = (0.75, 0.25)
    mask = torch.tensor([[True]])
    log_z = math.log(math.e + 2)
    expected = -(0.75 * -log_z + 0.25 * (1 - log_z))
    assert float(topk_cross_entropy(student, ids, teacher, mask)) == pytest.approx(expected,
                                                                                  abs=1e-6)


def signals_of(teacher, data, k, directory, max_tokens=100, lines=None):
    write_signals(teacher, data, lines or len(data), k, max_tokens, directory, CPU,
                  {"teacher": "t0", "corpus": "c0"})
    return TeacherSignals(directory)


def topk_word_kd(signals, **parameters):
    criterion = WordKD(**parameters)
    criterion.bind(teacher_signals=signals)
    return criterion


def test_topk_word_kd_over_the_whole_vocabulary_equals_the_exact_loss(tmp_path):
    student, teacher, data = tiny_pair()
    batch = data.collate([2, 0, 1])  # not in corpus order: signals are looked up by line
    logits = student(batch.source, batch.target_in)
    exact = WordKD(alpha=0.5, temperature=2.0)
    exact.bind(teacher_model=teacher)
    exact_loss = float(exact(step_with(logits, batch)).loss.detach())
    # several batches of 8 padded tokens while computing the signals
    all_30 = signals_of(teacher, data, 30, tmp_path / "top30", max_tokens=8)
    cached = topk_word_kd(all_30, alpha=0.5, temperature=2.0, teacher_topk=30)
    assert float(cached(step_with(logits, batch)).loss.detach()) == pytest.approx(exact_loss,
                                                                                  rel=1e-5)
    top4 = signals_of(teacher, data, 4, tmp_path / "top4")
    four = topk_word_kd(top4, alpha=0.5, temperature=2.0, teacher_topk=4)
    assert float(four(step_with(logits, batch)).loss.detach()) != pytest.approx(exact_loss,
                                                                                rel=1e-3)
    assert top4.ids.shape == (sum(len(t) + 1 for t in data.targets), 4)
    with torch.no_grad():
        teacher_logits = teacher(batch.source, batch.target_in)
    top = teacher_logits.topk(4, dim=-1)
    mask = batch.target_out != 0
    for k, signals in ((4, top4), (2, all_30)):  # the first k of a larger top-k are the top-k
        ids, values = signals.lookup(batch.lines, batch.target_in.size(1), k, CPU)
        assert torch.equal(ids[mask], top.indices[..., :k][mask])
        assert torch.allclose(values[mask], top.values[..., :k][mask], atol=1e-5)


def test_teacher_signals_follow_corpus_lines_and_refuse_another_corpus(tmp_path):
    student, teacher, data = tiny_pair()
    # lines 0 and 2 of a three-line corpus (line 1 too long for the student, say)
    subset = ParallelData([data.sources[0][:-1], data.sources[2][:-1]],
                          [data.targets[0], data.targets[2]], lines=[0, 2])
    signals = signals_of(teacher, subset, 4, tmp_path / "s", lines=3)
    assert list(signals.lengths) == [3, 0, 2]  # target + </s>; 0: no signals for line 1
    assert signals.meta["skipped_lines"] == 1 and signals.meta["positions"] == 5
    batch = subset.collate([1])
    ids, _ = signals.lookup(batch.lines, batch.target_in.size(1), 4, CPU)
    with torch.no_grad():
        expected = teacher(batch.source, batch.target_in).topk(4, dim=-1).indices
    assert torch.equal(ids, expected)
    signals.check_corpus("c0", subset)
    with pytest.raises(NmtkdError, match="computed on another corpus"):
        signals.check_corpus("c1", subset)
    with pytest.raises(NmtkdError, match="line 2 of the corpus has no signals"):
        signals.check_corpus("c0", data)
    with pytest.raises(NmtkdError, match="holds the teacher's top-4, top-5 was asked for"):
        signals.lookup([0], 3, 5, CPU)
    with pytest.raises(NmtkdError, match="needs the teacher signals"):
        WordKD(teacher_topk=4)(step_with(student(batch.source, batch.target_in), batch))
    with pytest.raises(NmtkdError, match="loss.teacher_topk"):
        WordKD(teacher_topk=-1)
    assert signals_of(teacher, data, 100, tmp_path / "all").k == 30  # k <= vocabulary


# ---- corpora ------------------------------------------------------------------------------------
def test_corpus_pairs_concatenate_in_order_and_nbest_expands_to_pairs(tmp_path, synthetic_spm):
    tokenizer = Tokenizer(synthetic_spm)
    (tmp_path / "src").write_text("a b\nc d\n")
    (tmp_path / "gold").write_text("A B\nC D\n")
    (tmp_path / "seqkd").write_text("A\nC\n")
    (tmp_path / "nbest").write_text("0\t0\t-1\tA\n0\t1\t-2\tB\n1\t0\t-1\tC\n1\t1\t-3\tD\n")
    out_src, out_tgt = tmp_path / "out.src", tmp_path / "out.tgt"

    def decoded(path):
        return tokenizer.decode_pieces([line.split() for line in path.read_text().splitlines()])

    src = tmp_path / "src"
    assert build_corpus([(src, tmp_path / "gold"), (src, tmp_path / "seqkd")], tokenizer,
                        out_src, out_tgt) == 4
    assert decoded(out_src) == ["a b", "c d", "a b", "c d"]
    assert decoded(out_tgt) == ["A B", "C D", "A", "C"]
    # the 2-best: a pair of its own, each source once per candidate
    assert expand_nbest(tmp_path / "nbest", src, 2, tmp_path / "b.src", tmp_path / "b.tgt") == 4
    assert (tmp_path / "b.src").read_text() == "a b\na b\nc d\nc d\n"
    assert (tmp_path / "b.tgt").read_text() == "A\nB\nC\nD\n"
    # a part with its own source side and fewer lines
    (tmp_path / "mono.src").write_text("e f\n")
    (tmp_path / "mono.tgt").write_text("E F\n")
    assert build_corpus([(src, tmp_path / "gold"), (tmp_path / "mono.src", tmp_path / "mono.tgt")],
                        tokenizer, out_src, out_tgt) == 3
    assert decoded(out_src) == ["a b", "c d", "e f"]


def test_corpus_errors_name_the_file_and_leave_nothing(tmp_path, synthetic_spm):
    tokenizer = Tokenizer(synthetic_spm)
    (tmp_path / "src").write_text("a\nb\n")
    (tmp_path / "short").write_text("A\n")
    (tmp_path / "one_best").write_text("0\t0\t-1\tA\n1\t0\t-1\tB\n")
    out_src, out_tgt = tmp_path / "o.src", tmp_path / "o.tgt"
    with pytest.raises(NmtkdError, match="src has 2 lines, .*short has 1"):
        build_corpus([(tmp_path / "src", tmp_path / "short")], tokenizer, out_src, out_tgt)
    with pytest.raises(NmtkdError, match="one_best: sentence 1 has 1 candidate"):
        expand_nbest(tmp_path / "one_best", tmp_path / "src", 2, out_src, out_tgt)
    with pytest.raises(NmtkdError, match="one_best: n-best lists for 2 sentences, but .*short "
                                         "has 1"):
        expand_nbest(tmp_path / "one_best", tmp_path / "short", 1, out_src, out_tgt)
    assert not out_src.exists() and not out_tgt.exists()


# ---- fine-tuning and agreement -------------------------------------------------------------------
def test_fine_tuning_starts_from_the_initial_model(synthetic, synthetic_spm, trained_tiny,
                                                   tmp_path):
    initial, _ = load_model(trained_tiny)
    trainer = make_trainer(synthetic, synthetic_spm, tmp_path / "ft", init_model=initial,
                           max_updates=1, identity={"init": "abc"})
    for key, value in initial.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[key], value)
    other = make_trainer(synthetic, synthetic_spm, tmp_path / "ft2", init_model=initial,
                         max_updates=1, identity={"init": "def"})
    assert other.fingerprint != trainer.fingerprint  # a different initial model: a new run
    with pytest.raises(NmtkdError, match="architecture differs"):
        make_trainer(synthetic, synthetic_spm, tmp_path / "ft3", model={"d_model": 32},
                     init_model=initial)


def test_top1_agreement(synthetic, synthetic_spm, trained_tiny, tmp_path):
    src, ref = synthetic["test"]
    same = agreement_files(trained_tiny, trained_tiny, synthetic_spm, src, ref,
                           tmp_path / "same.json")
    assert same["top1_agreement"] == 100.0 and same["sentences"] == 200
    assert same["ppl"] == pytest.approx(math.exp(same["nll"]))
    assert same["ppl"] < 3.0  # the briefly trained model predicts the synthetic task well
    model, _ = load_model(trained_tiny)
    torch.manual_seed(3)
    blank = Transformer(model.cfg)
    torch.save({"config": model.cfg.to_dict(), "model": blank.state_dict(), "meta": {}},
               tmp_path / "blank.pt")
    other = agreement_files(tmp_path / "blank.pt", trained_tiny, synthetic_spm, src, ref,
                            tmp_path / "other.json")
    assert other["top1_agreement"] < 20.0 and other["ppl"] > 50.0
    assert json.loads((tmp_path / "other.json").read_text())["tokens"] == same["tokens"]
    # top-1 = reference, counted sentence by sentence without batching or padding
    tokenizer = Tokenizer(synthetic_spm)
    for path, result in ((trained_tiny, same), (tmp_path / "blank.pt", other)):
        checked, _ = load_model(path)
        checked.eval()
        correct = tokens = 0
        with torch.no_grad():
            for source, target in zip(tokenizer.encode_ids(read_lines(src)),
                                      tokenizer.encode_ids(read_lines(ref)), strict=True):
                logits = checked(torch.tensor([source + [EOS_ID]]),
                                 torch.tensor([[BOS_ID] + target]))
                gold = torch.tensor(target + [EOS_ID])
                correct += int((logits[0].argmax(-1) == gold).sum())
                tokens += len(gold)
        assert result["tokens"] == tokens
        assert result["top1_reference"] == pytest.approx(100.0 * correct / tokens)
    assert same["top1_reference"] > 50.0 > 20.0 > other["top1_reference"]


# ---- comparison tables ---------------------------------------------------------------------------
def write_model_results(root, name, bleu, bleu_k1, int8_bleu, speed_int8, params, seconds):
    paths = {"eval": {}, "agreement": {}}
    signature = {"bleu_signature": "nrefs:1|bleu", "chrf_signature": "nrefs:1|chrf",
                 "ter_signature": "nrefs:1|ter"}
    for key, value in (("k1", bleu_k1), ("beam", bleu), ("int8", int8_bleu)):
        path = root / f"{name}.{key}.json"
        path.write_text(json.dumps({"bleu": value, "chrf": value + 20, "ter": 100 - value,
                                    **signature}))
        paths["eval"].setdefault("test", {})[key] = str(path)
    (root / f"{name}.ta.json").write_text(json.dumps({"top1_agreement": 80.0, "ppl": 5.0}))
    paths["agreement"]["test"] = str(root / f"{name}.ta.json")
    (root / f"{name}.train.json").write_text(json.dumps({
        "parameters": params, "train_seconds": seconds, "updates_per_second": 2.0,
        "train_ppl": 4.0}))
    (root / f"{name}.bench.tsv").write_text(f"s\th:m:s\n{seconds + 60}\t0:00:00\n")
    ct2 = {}
    for quant, size in (("float32", 4000), ("int8", 1000)):
        directory = root / f"{name}_{quant}"
        directory.mkdir()
        (directory / "model.bin").write_bytes(b"x" * size)
        ct2[quant] = str(directory)
    speeds = {}
    for quant, speed in (("float32", speed_int8 / 2), ("int8", speed_int8)):
        (root / f"{name}.{quant}.speed.json").write_text(json.dumps(
            {"tokens_per_second": speed, "sentences_per_second": speed / 10,
             "fixed": {"tokens_per_second": speed + 1000}}))
        speeds[quant] = str(root / f"{name}.{quant}.speed.json")
    return {"name": name, "data": "gold", "loss": "nll", "init": "",
            "training": str(root / f"{name}.train.json"),
            "benchmark": str(root / f"{name}.bench.tsv"), "ct2": ct2, "speed": speeds, **paths}


def teacher_baseline_seq_kd(tmp_path):
    """The manifest of three hand-made models' results: teacher, baseline, seq_kd."""
    models = [write_model_results(tmp_path, "teacher", 30.0, 28.0, 29.5, 1000.0, 8e6, 600),
              write_model_results(tmp_path, "baseline", 25.0, 22.0, 24.0, 3000.0, 4e6, 300),
              write_model_results(tmp_path, "seq_kd", 27.5, 27.0, 27.5, 3500.0, 4e6, 240)]
    return {"experiment": "x", "teacher": "teacher", "baseline_student": "baseline",
            "beam_size": 5, "testsets": ["test"], "speed_testset": "test", "models": models}


def test_comparison_tables_from_hand_made_results(tmp_path):
    manifest = teacher_baseline_seq_kd(tmp_path)
    outputs = [tmp_path / f"comparison.{ext}" for ext in ("md", "csv", "tex")]
    write_comparison(manifest, *outputs)
    frame = pd.read_csv(outputs[1]).set_index("model")
    assert list(frame.index) == ["teacher", "baseline", "seq_kd"]
    assert frame.loc["seq_kd", "delta_bleu_beam"] == pytest.approx(2.5)
    assert frame.loc["seq_kd", "delta_bleu_k1"] == pytest.approx(5.0)
    assert frame.loc["teacher", "delta_bleu_beam"] == pytest.approx(5.0)
    assert frame.loc["baseline", "int8_bleu_drop"] == pytest.approx(1.0)
    # at fixed lengths: 4500 / 2000 tok/s (free decoding would give 3500 / 1000)
    assert frame.loc["seq_kd", "speedup_int8"] == pytest.approx(2.25)
    assert frame.loc["seq_kd", "tok_s_int8"] == 3500 and frame.loc["seq_kd",
                                                                   "tok_s_fixed_int8"] == 4500
    assert frame.loc["baseline", "train_minutes"] == pytest.approx(6.0)  # benchmark wall clock
    assert frame.loc["teacher", "size_int8_mb"] == pytest.approx(1000 / 2**20)
    markdown = outputs[0].read_text()
    assert "| seq_kd " in markdown and "BLEU signature: `nrefs:1|bleu`" in markdown
    assert "## Overview" in markdown and "## test" in markdown
    latex = outputs[2].read_text()
    assert "\\begin{tabular}" in latex and "seq\\_kd" in latex and "TA (\\%)" in latex
    manifest["baseline_student"] = "nobody"
    with pytest.raises(NmtkdError, match="the baseline 'nobody' is not among the models"):
        write_comparison(manifest, tmp_path / "a.md", tmp_path / "a.csv", tmp_path / "a.tex")
    assert not (tmp_path / "a.md").exists()


def test_seeds_give_mean_and_std_cells_and_significance_marks(tmp_path):
    def run(name, student, seed, bleu):
        model = write_model_results(tmp_path, name, bleu, bleu - 2, bleu - 1, 3000.0, 4e6, 300)
        return {**model, "name": f"{student}/seed{seed}", "student": student, "seed": seed}

    models = [write_model_results(tmp_path, "teacher", 30.0, 28.0, 29.5, 1000.0, 8e6, 600),
              run("b1", "baseline", 1, 24.0), run("b2", "baseline", 2, 26.0),
              run("k1", "seq_kd", 1, 27.0), run("k2", "seq_kd", 2, 29.0),
              run("w1", "word_kd", 1, 25.5), run("w2", "word_kd", 2, 25.5)]
    for name, p_value in (("seq_kd", 0.004), ("word_kd", 0.3)):
        path = tmp_path / f"{name}.significance.json"
        path.write_text(json.dumps({"bleu": {"p_bootstrap": p_value, "p_ar": p_value},
                                    "chrf": {"p_bootstrap": 0.5, "p_ar": 0.5}}))
        for model in models:
            if model.get("student") == name:
                model["significance"] = {"test": str(path)}
    manifest = {"experiment": "x", "teacher": "teacher", "baseline_student": "baseline",
                "beam_size": 5, "testsets": ["test"], "speed_testset": "test", "models": models}
    outputs = [tmp_path / f"comparison.{ext}" for ext in ("md", "csv", "tex")]
    write_comparison(manifest, *outputs)
    frame = pd.read_csv(outputs[1]).set_index("model")  # every run's own values
    assert frame.loc["seq_kd/seed2", "bleu_beam"] == 29.0
    assert frame.loc["seq_kd/seed2", "delta_bleu_beam"] == pytest.approx(4.0)  # 29 - mean 25
    assert frame.loc["seq_kd/seed1", "p_bleu_bootstrap"] == 0.004
    section = outputs[0].read_text().split("## test")[1]
    rows = {line.split("|")[1].strip(): line for line in section.splitlines()
            if line.startswith("| ")}
    # mean ± sample std of 27 and 29: 28 ± 1.41; Δ 28 - 25 = +3.00, p 0.004: marked
    assert "28.00 ± 1.41" in rows["seq_kd"] and "+3.00*" in rows["seq_kd"]
    assert "25.00 ± 1.41" in rows["baseline"]
    # equal seeds: std 0; p 0.3: not marked; one seed (the teacher): no ±
    assert "25.50 ± 0.00" in rows["word_kd"] and "+0.50 " in rows["word_kd"]
    assert "30.00 " in rows["teacher"] and "±" not in rows["teacher"]


# ---- student config validation -------------------------------------------------------------------
def set_student(index, **changes):
    def change(config):
        config["students"][index].update(changes)
    return change


@pytest.mark.parametrize(("change", "expected"), [
    (set_student(1, data="seqkdd"),
     "config error at students[1].data: unknown data variant 'seqkdd'"),
    (set_student(2, data=["gold", "bt"]),
     "config error at students[2].data: unknown data variant 'bt'"),
    (set_student(1, loss="word-kd"), "config error at students[1].loss: unknown loss 'word-kd'"),
    (set_student(1, loss={"name": "kl"}),
     "config error at students[1].loss.name: unknown loss 'kl'"),
    (set_student(1, loss={"name": "word_kd", "topk": 8}),
     "config error at students[1].loss: loss 'word_kd': "),
    (set_student(1, loss={"name": "word_kd", "alpha": 2}),
     "config error at students[1].loss: loss.alpha must be in [0, 1], got 2"),
    (lambda c: c["losses"].update({"word-kd": {}}),
     "config error at losses.word-kd: unknown loss 'word-kd'"),
    (set_student(3, init="nope"), "config error at students[3].init: unknown init checkpoint "
                                  "'nope'"),
    (set_student(3, init="baseline_seqinter"), "config error at students[3].init: "
                                               "'baseline_seqinter' cannot initialise from itself"),
    (set_student(1, name="baseline"), "config error at students[1].name: 'baseline' is used"),
    (set_student(0, name="teacher"),
     "config error at students[0].name: 'teacher' is used by an earlier teacher"),
    (set_student(4, preset="tiny"), "config error at students[4].init: 'seq_kd' uses another "
                                    "preset"),
    (set_student(0, preset="huge"), "config error at students[0].preset: unknown preset"),
    (set_student(0, init="baseline_seqinter"),
     "config error at students[0].init: the init chain of 'baseline' loops"),
    (lambda c: c["comparison"].update(baseline="nobody"),
     "config error at comparison.baseline: 'nobody' is not a student"),
    (lambda c: c["students"][0].update(data="best2") or c["distill"].update(nbest=1),
     "config error at students[0].data: best2 needs distill.nbest >= 2"),
    (lambda c: c["evaluation"]["speed"].update(testset="wmt"),
     "config error at evaluation.speed.testset: unknown test set 'wmt'"),
    (set_student(0, datta="gold"), "'datta' was unexpected"),
])
def test_bad_student_config_fails_naming_the_key(change, expected):
    config = base_config()
    change(config)
    assert_plan_fails(config, expected)


def test_default_config_plans_every_student(tmp_path):
    result = run_snakemake(tmp_path, base_config(), "-n", "--quiet", "rules")
    counts = dict(line.split() for line in result.stdout.splitlines()
                  if len(line.split()) == 2 and line.split()[1].isdigit())
    assert counts["train_model"] == "8"  # one teacher, seven students
    assert counts["build_student_corpus"] == "2"  # seqkd and seqinter; gold is the teacher's
    assert counts["comparison_tables"] == "1"


def test_gpu_config_plans_a_transformer_base_teacher_on_cuda(tmp_path):
    from workflow_config import REPO

    result = run_snakemake(tmp_path, base_config(), "-n", "-p", "--configfile", "config.yaml",
                           str(REPO / "config.gpu.yaml"), "--resources", "gpu=1")
    plan = result.stdout + result.stderr
    assert "results/multi30k_en_de_gpu/models/teacher/model.pt" in plan
    assert '"d_model": 512' in plan and '"device": "cuda"' in plan and "gpu=1" in plan


# ---- the whole chain -----------------------------------------------------------------------------
# ---- the whole chain -----------------------------------------------------------------------------
PLOTS = {"bleu_speed_float32": "Pareto front", "bleu_speed_int8": "quantized models",
         "bleu_size": "size on disk", "validation_curves": "counts its own updates",
         "agreement_bleu": "rising together"}


class TagCounter(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = Counter()

    def handle_starttag(self, tag, attrs):
        self.tags[tag] += 1


def assert_report_renders(workdir, config):
    """The plots under results/<experiment>/plots/, and `snakemake --report` embedding them,
    the comparison page and every caption in a page that parses as HTML."""
    plots = workdir / "results/tiny/plots/kim_rush"
    for name in PLOTS:
        assert (plots / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert "word_kd" in (plots / f"{name}.svg").read_text()
    report = workdir / "report.html"
    run_snakemake(workdir, config, "--report", str(report), write=False)
    page = report.read_text()
    parser = TagCounter()
    parser.feed(page)
    assert parser.tags["html"] == 1 and parser.tags["body"] == 1 and parser.tags["script"] > 0
    for name, caption_words in PLOTS.items():
        assert f"{name}.png" in page and caption_words in page, name
    assert page.count("iVBORw0KGgo") >= len(PLOTS)  # each PNG embedded (base64 of its header)
    assert "(en \\u2192 de)" in page  # the description, rendered (JSON-escaped in the page)
    table = re.search(r'"data_uri": "data:text/html;charset=utf8;filename=kim_rush.html;'
                      r'base64,([^"]+)"', page)  # each result is embedded as a data URI
    table = base64.b64decode(table.group(1)).decode()
    assert "Comparison: tiny, study kim_rush" in table and "seqkd_seqinter_wordkd" in table



@pytest.mark.e2e
def test_tiny_config_runs_through_the_comparison_tables(tmp_path):
    require_multi30k()
    data = multi30k_subset(tmp_path, train=2000, other=200)
    config = with_default_students(tiny_config("tiny", data, max_updates=200,
                                               valid_interval=100))
    config["students"][1]["seeds"] = [1, 2]  # word_kd: two runs, pooled in the tables
    config["distill"].update({"chunks": 2, "max_length": 100})
    with_word_level_study(config)
    run_snakemake(tmp_path, config, "--cores", "2")
    tables = tmp_path / "results/tiny/tables"
    frame = pd.read_csv(tables / "kim_rush.csv")
    expected = ["teacher", "baseline", "word_kd/seed1", "word_kd/seed2", "seq_kd",
                "baseline_seqinter", "seqkd_seqinter", "seqkd_wordkd", "seqkd_seqinter_wordkd"]
    assert list(frame["model"]) == expected
    numeric = frame.select_dtypes("number")
    tests = [c for c in numeric if c.startswith("p_")]
    assert not numeric.drop(columns=tests).isna().any().any(), numeric.isna().sum()
    tested = ~frame["student"].isin(["teacher", "baseline"])
    assert frame.loc[~tested, tests].isna().all().all()  # no test against itself
    assert ((frame.loc[tested, tests] > 0) & (frame.loc[tested, tests] <= 1)).all().all()
    by_model = frame.set_index("model")
    assert by_model.loc["word_kd/seed2", "seed"] == 2 and by_model.loc["seq_kd", "seed"] == 2
    teacher = by_model.loc["teacher"]
    assert teacher["top1_agreement"] == 100.0 and teacher["speedup_int8"] == 1.0
    assert (frame["size_int8_mb"] < frame["size_float32_mb"]).all()
    assert (frame["tok_s_int8"] > 0).all() and (frame["bleu_beam"] > 0).all()
    assert (frame.loc[frame["model"] != "teacher", "top1_agreement"] < 100).all()
    test = json.loads((tmp_path / "results/tiny/eval/word_kd/"
                       "test_2016_flickr.vs_baseline.significance.json").read_text())
    assert (test["runs"], test["baseline_runs"], test["sentences"]) == (2, 1, 200)
    markdown = (tables / "kim_rush.md").read_text()
    for name in ("teacher", "baseline", "word_kd", "seq_kd", "seqkd_seqinter_wordkd"):
        assert f"| {name} " in markdown
    lines = [line for line in markdown.split("## test_2016_flickr")[1].splitlines()
             if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].split("|")[1:-1]]
    word_kd = dict(zip(header, [cell.strip() for cell in next(
        line for line in lines if line.startswith("| word_kd ")).split("|")[1:-1]], strict=True))
    assert word_kd["Seeds"] == "2" and " ± " in word_kd["BLEU K=5"]
    assert "BLEU signature: `nrefs:1" in markdown
    assert "## Reported in the paper, for orientation" in markdown
    assert "| baseline              | 17.6 " in markdown.split("## Reported in the paper")[1]
    assert not (tmp_path / "results/tiny/models/selective_kd_batch").exists()  # not this study
    summary = json.loads((tmp_path / "results/tiny/models/seqkd_seqinter/training.json")
                         .read_text())
    assert summary["updates"] == 40  # fine-tuning ran its own schedule
    assert_report_renders(tmp_path, config)
    # rerun only the report
    before = (tables / "kim_rush.csv").stat().st_mtime_ns
    rerun = run_snakemake(tmp_path, config, "--cores", "2", "results/tiny/tables/kim_rush.md",
                          "--forcerun", "comparison_tables")
    assert "rule comparison_tables" in rerun.stdout + rerun.stderr
    assert "rule train_model" not in rerun.stdout + rerun.stderr
    assert (tables / "kim_rush.csv").stat().st_mtime_ns > before
    assert_word_level_study_reuses_the_experiment(tmp_path, config)


WORD_LEVEL = ["baseline", "word_kd", "seq_kd", "annealing_kd", "selective_kd_batch",
              "selective_kd_global", "tie_kd"]
KNN = ["baseline", "word_kd", "seq_kd", "selective_kd_global", "knn_kd"]


def with_word_level_study(config):
    """The tiny config with the default config's kim_rush, word_level and knn studies; their
    own students on tiny schedules (kNN-KD from an IVFPQ index of the teacher's datastore)."""
    default = base_config()
    own = {"annealing_kd_stage1", "annealing_kd", "selective_kd_batch", "selective_kd_global",
           "tie_kd", "knn_kd"}
    config["students"] += [s for s in default["students"] if s["name"] in own]
    schedules = {"annealing_kd_stage1": {"max_updates": 100, "average_last": 0,
                                         "valid_interval": 50},
                 "annealing_kd": {"lr": 3e-4, "warmup": 10, "max_updates": 40,
                                  "valid_interval": 20},  # stage II
                 "tie_kd": {"max_updates": 40, "valid_interval": 20},
                 "knn_kd": {"max_updates": 40, "valid_interval": 20}}
    for student in config["students"]:
        student["training"] = schedules.get(student["name"], student.get("training", {}))
    config["losses"]["selective_kd"]["queue_size"] = 2000
    config["losses"]["knn_kd"]["k"] = 16
    config["knn"] = {"model": "teacher", "targets": {"k": 16},
                     "index": {"type": "ivfpq", "centroids": 32, "code_size": 16, "nprobe": 8},
                     "tune": {"k": [4, 8], "lambda": [0.3], "temperature": [100]}}
    config["studies"] = {"kim_rush": default["studies"]["kim_rush"],
                         "word_level": {**default["studies"]["word_level"],
                                        "students": WORD_LEVEL},
                         "knn": {**default["studies"]["knn"], "students": KNN}}
    config["study"] = "kim_rush"
    return config


def assert_word_level_study_reuses_the_experiment(workdir, config):
    """`--config study=word_level` trains the study's own students only and writes its
    tables and plots, Selective KD's selection included."""
    models = workdir / "results/tiny/models"
    shared = {name: (models / name / "model.pt").stat().st_mtime_ns
              for name in ("teacher", "baseline", "word_kd/seed1", "seq_kd")}
    signals = workdir / "results/tiny/signals/teacher/gold.top8/meta.json"
    signals_time = signals.stat().st_mtime_ns
    run_snakemake(workdir, config, "--cores", "2", "--config", "study=word_level", write=False)
    assert {name: (models / name / "model.pt").stat().st_mtime_ns for name in shared} == shared
    assert signals.stat().st_mtime_ns == signals_time  # Word-KD's signals, reused
    frame = pd.read_csv(workdir / "results/tiny/tables/word_level.csv")
    assert list(frame["student"].drop_duplicates()) == ["teacher", *WORD_LEVEL]
    assert frame["bleu_beam"].notna().all() and (frame["tok_s_fixed_int8"] > 0).all()
    stage_one = json.loads((models / "annealing_kd_stage1/training.json").read_text())
    assert stage_one["criterion"] == "annealing_kd" and stage_one["updates"] == 100
    assert stage_one["final_model"].startswith("best checkpoint")  # stage II starts from it
    for strategy in ("batch", "global"):
        terms = json.loads((models / f"selective_kd_{strategy}/training.json").read_text())[
            "train_terms"]
        assert 0 < terms["selected"] <= 1 and terms["threshold"] > 0
        if strategy == "batch":  # ⌈rN⌉ of every batch's N tokens, ties included
            assert terms["selected"] >= 0.5
    tie_kd = json.loads((models / "tie_kd/training.json").read_text())
    assert tie_kd["criterion"] == "tie_kd" and tie_kd["updates"] == 40
    assert tie_kd["train_terms"]["rank"] > 0 and tie_kd["train_terms"]["kd"] > 0
    selection = (workdir / "results/tiny/plots/word_level/selection.svg").read_text()
    assert "selective_kd_batch" in selection and "selective_kd_global" in selection
    markdown = (workdir / "results/tiny/tables/word_level.md").read_text()
    paper = markdown.split("## Reported in the paper")[1].split("##")[0]
    assert "Wang et al. 2021" in paper
    rows = [line.split("|")[1:3] for line in paper.splitlines() if line.startswith("| ")][1:]
    assert [(name.strip(), value.strip()) for name, value in rows] == [  # the study's order
        ("baseline", "27.29"), ("word_kd", "28.14"), ("seq_kd", "28.15"),
        ("selective_kd_batch", "28.42"), ("selective_kd_global", "28.57")]
    assert_knn_study_reuses_the_experiment(workdir, config)


def assert_knn_study_reuses_the_experiment(workdir, config):
    """`--config study=knn`: the datastore, its index and stored neighbours, the kNN-KD
    student, and the kNN-MT row; the other rows reused."""
    models = workdir / "results/tiny/models"
    shared = {name: (models / name / "model.pt").stat().st_mtime_ns
              for name in ("teacher", "baseline", "selective_kd_global")}
    run_snakemake(workdir, config, "--cores", "2", "--config", "study=knn", write=False)
    assert {name: (models / name / "model.pt").stat().st_mtime_ns for name in shared} == shared
    frame = pd.read_csv(workdir / "results/tiny/tables/knn.csv")
    assert list(frame["student"].drop_duplicates()) == ["teacher", "knn_mt", *KNN]
    exported = frame["student"] != "knn_mt"
    assert frame["bleu_beam"].notna().all()
    assert (frame.loc[exported, "tok_s_fixed_int8"] > 0).all()
    assert frame.loc[~exported, "tok_s_fixed_int8"].isna().all()
    assert_knn_mt_row(workdir, frame[~exported])
    assert_knn_kd_student_read_the_teachers_neighbours(workdir)


def assert_knn_kd_student_read_the_teachers_neighbours(workdir):
    knn = workdir / "results/tiny/knn/teacher/gold"
    store = json.loads((knn / "datastore/meta.json").read_text())
    index = json.loads((knn / "index/meta.json").read_text())
    targets = json.loads((knn / "targets.k16/meta.json").read_text())
    encoded = (workdir / "results/tiny/data/spm/train.de").read_text().splitlines()
    assert store["entries"] == sum(len(line.split()) + 1 for line in encoded)
    assert (store["state"], store["dim"]) == ("final", 64)
    assert index["type"] == "ivfpq" and index["entries"] == store["entries"]
    assert (targets["kind"], targets["k"], targets["keep_self"]) == ("knn", 16, True)
    assert targets["positions"] == store["entries"]
    student = json.loads((workdir / "results/tiny/models/knn_kd/training.json").read_text())
    assert student["criterion"] == "knn_kd" and student["updates"] == 40
    assert student["train_terms"]["kl"] > 0


def assert_knn_mt_row(workdir, rows):
    """kNN-MT: the teacher decoding with its datastore, evaluated like every model, and its
    speed against the teacher's torch beam search without retrieval."""
    speed = json.loads((workdir / "results/tiny/speed/knn_mt.json").read_text())
    with_knn, base = speed["models"]["knn"], speed["models"]["base"]
    assert speed["ratio"] == pytest.approx(with_knn["tokens_per_second"]
                                           / base["tokens_per_second"])
    assert (rows["knn_speed_ratio"] == speed["ratio"]).all()
    tuned = json.loads((workdir / "results/tiny/knn/teacher/gold/knn_mt_tuned.json").read_text())
    assert [(p["k"], p["lambda"]) for p in tuned["grid"]] == [(4, 0.0), (4, 0.3), (8, 0.3)]
    best = max(tuned["grid"][1:], key=lambda point: point["bleu"])
    assert speed["knn"] == {"k": best["k"], "lambda": 0.3, "temperature": 100.0}
    evaluation = json.loads((workdir / "results/tiny/eval/knn_mt/"
                             "test_2016_flickr.float32.beam5.json").read_text())
    assert evaluation["decoding"] == (
        "torch beam search with kNN-MT (teacher, k, λ and T tuned on valid by BLEU over k "
        "[4, 8] × λ [0.3] × T [100]) beam 5")
    assert (rows["bleu_k1"] > 0).all() and rows["top1_agreement"].isna().all()
    assert rows["p_bleu_bootstrap"].between(0, 1).all()  # tested against the baseline
    markdown = (workdir / "results/tiny/tables/knn.md").read_text()
    assert "Speed ÷ no kNN" in markdown and "| knn_mt " in markdown
    assert f"(used: k {best['k']}, λ 0.3, T 100.0)" in markdown
