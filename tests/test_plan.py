"""The resolved plan, built directly from configs (no Snakemake): models, corpora, losses,
resources and paths as the rules receive them."""

from __future__ import annotations

import pytest
from workflow_config import add_student, assert_plan_fails, base_config, plan_of

from nmtkd.errors import NmtkdError
from nmtkd.plan import TEACHER

R = "results/multi30k_en_de"


@pytest.fixture(scope="module")
def plan():
    return plan_of(base_config())


def test_models_variants_and_baseline_of_the_default_config(plan):
    assert plan.models == [TEACHER, "baseline", "word_kd", "seq_kd", "baseline_seqinter",
                           "seqkd_seqinter", "seqkd_wordkd", "seqkd_seqinter_wordkd"]
    # gold alone reuses the teacher's encoded data; seqinter and seqkd need their own corpora
    assert plan.corpora == ["teacher/seqinter", "teacher/seqkd"]
    assert plan.distilling_teachers == [TEACHER]
    assert plan.baseline == "baseline"
    assert plan.speed_testset == "test_2016_flickr"  # the first test set: config.yaml names none
    assert plan.beams == [1, 5]


def test_losses_get_their_defaults_and_teacher_inputs_only_where_needed(plan):
    word_kd = plan.train_settings("word_kd")["training"]["loss"]
    assert word_kd == {"name": "word_kd", "alpha": 0.5, "temperature": 1.0,
                       "label_smoothing": 0.0, "teacher_topk": 8}
    assert plan.train_settings("baseline")["training"]["loss"] == {"name": "nll",
                                                                  "label_smoothing": 0.1}
    for name in ("seq_kd", "baseline"):
        inputs = plan.training_inputs(name)
        assert "teacher" not in inputs and "teacher_signals" not in inputs
        assert plan.training_arguments(name) == []
    # top-8 Word-KD reads the teacher's signals on its own corpus, not the teacher itself
    inputs = plan.training_inputs("seqkd_wordkd")
    assert "teacher" not in inputs
    assert inputs["teacher_signals"] == f"{R}/signals/teacher/teacher/seqkd.top8"
    assert plan.training_arguments("seqkd_seqinter_wordkd") == [
        "--init", f"{R}/models/seqkd_wordkd/model.pt",
        "--teacher-signals", f"{R}/signals/teacher/teacher/seqinter.top8"]


def test_a_live_teacher_criterion_gets_the_teacher_checkpoint():
    config = base_config()
    config["students"][1]["loss"] = {"name": "word_kd", "teacher_topk": 0}
    plan = plan_of(config)
    assert plan.training_arguments("word_kd") == ["--teacher", f"{R}/models/teacher/model.pt"]


def test_fine_tuning_merges_training_keys_over_the_defaults(plan):
    training = plan.train_settings("seqkd_seqinter")["training"]
    # student_defaults.training sets 600 updates; the fine-tune's own keys win
    assert (training["lr"], training["warmup"], training["max_updates"]) == (3e-4, 50, 150)
    assert training["max_tokens"] == 2500  # from the global training section
    inputs = plan.training_inputs("seqkd_seqinter")
    assert inputs["init"] == f"{R}/models/seq_kd/model.pt"
    assert inputs["train_src"] == f"{R}/data/spm/variants/teacher/seqinter.en"
    assert plan.training_inputs("baseline")["train_tgt"] == f"{R}/data/spm/train.de"


def test_resources_come_from_the_section_or_the_defaults(plan):
    assert plan.teacher.resources.threads == 2 and plan.teacher.resources.mem_mb == 6000
    student = plan.students["baseline"].resources
    assert (student.threads, student.mem_mb, student.runtime) == (1, 4000, 120)
    assert plan.students["baseline"].gpus == 0  # device auto: no GPU is requested


def test_corpus_inputs_are_file_pairs_in_order():
    config = base_config()
    add_student(config, {"name": "base_kd", "data": ["gold", "seqkd", "best2"], "loss": "nll"})
    plan = plan_of(config)
    assert "teacher/gold+seqkd+best2" in plan.corpora
    source = f"{R}/data/clean/train.en"
    assert plan.corpus_inputs("teacher/gold+seqkd+best2") == {
        "spm": f"{R}/spm/spm.model",
        "sources": [source, source, f"{R}/distill/teacher/best2.en"],
        "targets": [f"{R}/data/clean/train.de", f"{R}/distill/teacher/seqkd.de",
                    f"{R}/distill/teacher/best2.de"]}


def test_comparison_manifest_lists_every_result_file(plan):
    manifest = plan.comparison_manifest()
    assert [m["name"] for m in manifest["models"]] == plan.models
    seq_kd = manifest["models"][3]
    assert seq_kd["eval"]["test_2017_mscoco"] == {
        "k1": f"{R}/eval/seq_kd/test_2017_mscoco.float32.beam1.json",
        "beam": f"{R}/eval/seq_kd/test_2017_mscoco.float32.beam5.json",
        "int8": f"{R}/eval/seq_kd/test_2017_mscoco.int8.beam5.json"}
    assert seq_kd["benchmark"] == f"{R}/benchmarks/train_model/seq_kd.tsv"
    # per model: training.json, benchmark, 2 CT2 dirs, 2 speed files, 3 x 3 evaluations,
    # 3 agreements = 18 files; 8 models; and 3 significance tests for each of the 6 students
    # that are not the baseline
    assert len(plan.comparison_inputs()) == 18 * 8 + 3 * 6
    assert seq_kd["significance"]["test_2017_mscoco"] == (
        f"{R}/eval/seq_kd/test_2017_mscoco.vs_baseline.significance.json")
    assert manifest["models"][1]["significance"] == {}  # the baseline
    assert plan.significance_inputs("seq_kd", "baseline", "test_2016_flickr") == {
        "system": [f"{R}/translations/seq_kd/test_2016_flickr.float32.beam5.de"],
        "baseline": [f"{R}/translations/baseline/test_2016_flickr.float32.beam5.de"],
        "references": f"{R}/data/raw/test_2016_flickr.de"}
    assert manifest["speed_settings"] == (
        "beam 5, batch 32, 2 threads, one untimed warm-up pass, then the median of 3 "
        "interleaved timed run(s) on the first 500 sentences, free and at fixed lengths; the "
        "models of one preset and "
        "quantization measured in one job")
    assert manifest["study"] == "kim_rush" and manifest["baseline_student"] == "baseline"
    assert manifest["paper"]["rows"]["seq_kd"] == 19.0
    # the seven students share the student preset: one speed job per quantization
    assert plan.speed_groups() == {"teacher": ["teacher"], "student": list(plan.students)}
    assert seq_kd["speed"]["int8"] == f"{R}/speed/kim_rush/student.int8.json"
    assert seq_kd["speed_key"] == "seq_kd"
    assert plan.speed_models("kim_rush", "student", "int8")["word_kd"] == {
        "model": f"{R}/models/word_kd/ct2_int8", "compute_type": "default"}


def with_ct2_only_teacher(folder):
    """The default config with an existing CT2-only teacher (a folder with an spm.model)."""
    ct2 = folder / "ct2"
    ct2.mkdir()
    (ct2 / "spm.model").write_text("x")
    config = base_config()
    config["teachers"][0]["existing"] = {"ct2_model": str(ct2)}
    return config, ct2


def test_a_ct2_only_teacher_is_decoded_where_it_is(tmp_path):
    config, ct2 = with_ct2_only_teacher(tmp_path)
    keep = ["baseline", "seq_kd", "baseline_seqinter", "seqkd_seqinter"]  # no teacher needed
    config["students"] = [s for s in config["students"] if s["name"] in keep]
    config["studies"] = {"kim_rush": {"students": keep}}
    plan = plan_of(config)
    assert plan.teacher.ct2_only and not plan.teacher.trained
    assert plan.spm_model() == str(ct2 / "spm.model")
    assert plan.ct2_model(TEACHER, "int8") == str(ct2)
    assert plan.compute_type(TEACHER, "int8") == "int8"
    assert plan.compute_type("baseline", "int8") == "default"
    assert plan.teacher_exports() == []
    teacher_row = plan.comparison_manifest()["models"][0]
    assert teacher_row["training"] is None and teacher_row["agreement"] == {}


def test_a_word_level_student_with_a_ct2_only_teacher_is_refused(tmp_path):
    config, _ = with_ct2_only_teacher(tmp_path)
    with pytest.raises(NmtkdError, match=r"config error at students\[1\].loss: 'word_kd' needs "
                                         "the teacher's torch checkpoint"):
        plan_of(config)


# ---- named teachers ----------------------------------------------------------------------------
def with_second_teacher():
    config = base_config()
    config["teachers"].append({"name": "big", "preset": "teacher",
                               "training": {"max_updates": 3000}})
    add_student(config, {"name": "seq_kd_big", "data": ["gold", "seqkd"], "loss": "word_kd",
                         "teacher": "big"})
    return config


def test_a_second_teacher_keys_its_distillation_signals_and_corpora_by_name():
    plan = plan_of(with_second_teacher())
    assert plan.models[:2] == [TEACHER, "big"] and plan.teacher.name == TEACHER
    assert plan.teachers["big"].training["max_updates"] == 3000
    assert plan.distilling_teachers == [TEACHER, "big"]
    assert "big/gold+seqkd" in plan.corpora
    assert plan.corpus_inputs("big/gold+seqkd")["targets"][1] == f"{R}/distill/big/seqkd.de"
    assert plan.training_inputs("seq_kd_big")["teacher_signals"] == (
        f"{R}/signals/big/big/gold+seqkd.top8")
    # Top-1 Agreement against its own teacher; the table names the teacher of its data
    assert plan.reference_teacher("seq_kd_big") == "big"
    assert plan.reference_teacher("big") == "big"
    assert plan.description("seq_kd_big")["data"] == "gold+seqkd (big)"
    assert plan.description("seq_kd")["data"] == "seqkd"
    assert f"{R}/models/big/ct2_int8" in plan.teacher_exports()
    assert plan.comparison_manifest()["teacher"] == TEACHER


@pytest.mark.parametrize(("change", "expected"), [
    (lambda c: c["students"][-1].update(teacher="huge"),
     "config error at students[19].teacher: unknown teacher 'huge' (known: teacher, big)"),
    (lambda c: c["teachers"][1].update(name="teacher"),
     "config error at teachers[1].name: 'teacher' is used by an earlier teacher"),
    (lambda c: c["students"][0].update(name="big"),
     "config error at students[0].name: 'big' is used by an earlier teacher"),
    (lambda c: c.update(teacher={"preset": "teacher"}),
     "config error at teachers: give either `teacher` (one teacher) or `teachers`"),
    (lambda c: c["teachers"][1].update(preset="huge"),
     "config error at teachers[1].preset: unknown preset 'huge'"),
])
def test_teacher_errors_name_their_key(change, expected):
    config = with_second_teacher()
    change(config)
    assert_plan_fails(config, expected)


def test_existing_teachers_must_share_one_sentencepiece_model(tmp_path):
    config = with_second_teacher()
    for index, text in enumerate(("one", "two")):
        (tmp_path / f"m{index}.pt").write_text("x")
        (tmp_path / f"spm{index}.model").write_text(text)
        config["teachers"][index]["existing"] = {"checkpoint": str(tmp_path / f"m{index}.pt"),
                                                 "spm": str(tmp_path / f"spm{index}.model")}
    assert_plan_fails(config, "config error at teachers[1].existing: its SentencePiece model "
                              "differs from that of teachers[0]")
    (tmp_path / "spm1.model").write_text("one")  # the same bytes: accepted
    assert plan_of(config).spm_model() == str(tmp_path / "spm0.model")


# ---- seeds -------------------------------------------------------------------------------------
def test_seeds_make_one_run_per_seed_in_its_own_folder():
    config = base_config()
    config["student_defaults"]["seeds"] = [1, 2]
    config["students"][0]["seeds"] = [1, 2, 3]  # the baseline: its own list wins
    plan = plan_of(config)
    assert list(plan.students)[:4] == ["baseline/seed1", "baseline/seed2", "baseline/seed3",
                                       "word_kd/seed1"]
    run = plan.students["word_kd/seed2"]
    assert run.training["seed"] == 2 and run.student == "word_kd"
    assert plan.torch_checkpoint("word_kd/seed2") == f"{R}/models/word_kd/seed2/model.pt"
    # a fine-tuning run starts from the same seed's run of its init student
    assert plan.training_inputs("seqkd_seqinter/seed2")["init"] == (
        f"{R}/models/seq_kd/seed2/model.pt")
    assert plan.description("seqkd_seqinter/seed2")["init"] == "seq_kd"
    assert plan.baseline == "baseline/seed1" and plan.baseline_student == "baseline"
    assert plan.significance_inputs("word_kd", "baseline", "test_2016_flickr")["baseline"] == [
        f"{R}/translations/baseline/seed{k}/test_2016_flickr.float32.beam5.de" for k in (1, 2, 3)]
    row = plan.model_results("word_kd/seed2", "kim_rush")
    assert (row["student"], row["seed"]) == ("word_kd", 2)
    assert row["eval"]["test_2016_flickr"]["k1"] == (
        f"{R}/eval/word_kd/seed2/test_2016_flickr.float32.beam1.json")
    assert len(plan.models) == 1 + 3 + 6 * 2


def test_without_seeds_a_student_is_one_run_with_the_training_seed(plan):
    run = plan.students["seq_kd"]
    assert run.training["seed"] == 1 and run.student == "seq_kd"
    assert plan.model_results("seq_kd", "kim_rush")["seed"] == 1


def test_a_fine_tune_needs_seeds_its_init_student_has():
    config = base_config()
    config["students"][2]["seeds"] = [1, 2]  # seq_kd
    config["students"][4]["seeds"] = [2, 3]  # seqkd_seqinter, init seq_kd
    assert_plan_fails(config, "config error at students[4].init: 'seq_kd' has runs for seeds "
                              "[1, 2]; 'seqkd_seqinter' must list seeds among them")
    del config["students"][4]["seeds"]
    assert_plan_fails(config, "config error at students[4].init")


# ---- decoding backends -------------------------------------------------------------------------
def test_the_torch_backend_decodes_float32_from_the_checkpoint_and_int8_stays_ctranslate2(plan):
    assert plan.decoder_inputs("seq_kd", "float32", "evaluation") == {
        "model": f"{R}/models/seq_kd/ct2_float32"}
    assert plan.decoder_arguments("seq_kd", "int8", "evaluation") == ["--compute-type",
                                                                      "default"]
    config = base_config()
    config["evaluation"]["backend"] = "torch"
    config["distill"]["backend"] = "torch"
    torch_plan = plan_of(config)
    assert torch_plan.decoder_inputs("seq_kd", "float32", "evaluation") == {
        "model": f"{R}/models/seq_kd/model.pt", "spm": f"{R}/spm/spm.model"}
    assert torch_plan.decoder_arguments("teacher", "float32", "distill") == [
        "--backend", "torch", "--spm", f"{R}/spm/spm.model"]
    assert torch_plan.decoder_inputs("seq_kd", "int8", "evaluation") == {
        "model": f"{R}/models/seq_kd/ct2_int8"}
    assert torch_plan.decoder_name("float32", "evaluation") == "torch beam search"
    assert torch_plan.decoder_name("int8", "evaluation") == "CTranslate2"


def test_the_torch_backend_needs_a_torch_teacher(tmp_path):
    config, _ = with_ct2_only_teacher(tmp_path)
    config["students"] = []
    config["comparison"] = {}
    config["distill"]["backend"] = "torch"
    assert_plan_fails(config, "config error at distill.backend: the torch beam search needs a "
                              "torch checkpoint; teacher 'teacher' is a CTranslate2 model")


def test_the_bleu_tokenizer_follows_the_target_language():
    config = base_config()
    assert plan_of(config).scoring_arguments() == ["--tokenize", "13a",
                                                   "--chrf-word-order", "0"]
    config["data"]["tgt_lang"] = "ja"
    config["evaluation"]["chrf_word_order"] = 2
    assert plan_of(config).scoring_arguments() == ["--tokenize", "ja-mecab",
                                                   "--chrf-word-order", "2"]
    config["evaluation"]["tokenize"] = "intl"
    assert plan_of(config).bleu_tokenize == "intl"


# ---- studies -----------------------------------------------------------------------------------
KIM_RUSH = ["baseline", "word_kd", "seq_kd", "baseline_seqinter", "seqkd_seqinter",
            "seqkd_wordkd", "seqkd_seqinter_wordkd"]


def test_the_default_run_builds_the_kim_rush_study_only(plan):
    assert list(plan.studies) == ["kim_rush"] and list(plan.students) == KIM_RUSH
    assert plan.report_targets()[:2] == [f"{R}/tables/kim_rush.md",
                                         f"{R}/plots/kim_rush/bleu_speed_float32.png"]
    assert not any("selection" in path for path in plan.report_targets())
    assert plan.tested_pairs() == [(name, "baseline") for name in KIM_RUSH[1:]]


def test_a_study_brings_its_students_and_what_they_fine_tune_from():
    config = base_config()
    config["study"] = "word_level"
    plan = plan_of(config)
    assert list(plan.students) == ["baseline", "word_kd", "seq_kd", "annealing_kd_stage1",
                                   "annealing_kd", "selective_kd_batch", "selective_kd_global",
                                   "tie_kd"]
    # stage I is trained (annealing_kd starts from it) but is no row of the study
    assert "annealing_kd_stage1" not in plan.study_models()
    assert plan.training_inputs("annealing_kd")["init"] == (
        f"{R}/models/annealing_kd_stage1/model.pt")
    assert plan.training_inputs("annealing_kd_stage1")["teacher"] == (
        f"{R}/models/teacher/model.pt")  # a live teacher: the full-vocabulary logits
    assert plan.training_inputs("selective_kd_global")["teacher_signals"] == (
        f"{R}/signals/teacher/gold.top8")  # the signals Word-KD reads too
    assert plan.students["selective_kd_global"].training["loss"] == {
        "name": "selective_kd", "strategy": "global", "rate": 0.5, "queue_size": 30000,
        "label_smoothing": 0.1, "teacher_topk": 8}
    assert f"{R}/plots/word_level/selection.png" in plan.report_targets()
    assert plan.comparison_manifest()["paper"]["rows"]["selective_kd_global"] == 28.57


def test_two_studies_share_their_common_students():
    config = base_config()
    config["study"] = "kim_rush,word_level"
    plan = plan_of(config)
    assert list(plan.studies) == ["kim_rush", "word_level"]
    assert len(plan.students) == 7 + 5  # baseline, word_kd and seq_kd trained once
    assert plan.comparison_manifest("word_level")["models"][1]["speed"]["int8"] == (
        f"{R}/speed/word_level/student.int8.json")
    assert plan.speed_groups("word_level")["student"] == [
        "baseline", "word_kd", "seq_kd", "annealing_kd", "selective_kd_batch",
        "selective_kd_global", "tie_kd"]
    # one significance test per (student, baseline), whichever studies share it
    assert plan.tested_pairs().count(("word_kd", "baseline")) == 1
    config["study"] = ["word_level", "kim_rush"]
    assert list(plan_of(config).studies) == ["word_level", "kim_rush"]


def test_the_tie_kd_studies_share_word_kd_full_and_compare_against_their_baselines():
    config = base_config()
    config["study"] = "tie_kd_ablation,soft_targets"
    plan = plan_of(config)
    assert list(plan.students) == ["baseline", "tie_kd", "tie_kd_ranking", "tie_kd_iterative",
                                   "word_kd_full", "kd_without_correlation", "kd_without_top1",
                                   "kd_topk_info"]
    assert plan.studies["tie_kd_ablation"].baseline == "word_kd_full"
    assert plan.studies["soft_targets"].baseline == "baseline"  # (d): label smoothing only
    pairs = plan.tested_pairs()
    assert ("tie_kd", "word_kd_full") in pairs and ("word_kd_full", "baseline") in pairs
    assert plan.students["tie_kd_ranking"].training["loss"] == {
        "name": "tie_kd", "iterations": 1, "ranking": True, "topk": 5, "alpha": 0.5,
        "label_smoothing": 0.1}
    assert plan.students["kd_without_top1"].training["loss"] == {
        "name": "soft_target_kd", "variant": "without_top1", "topk": 5, "alpha": 0.5,
        "label_smoothing": 0.1, "teacher_topk": 0}
    for name in ("tie_kd", "kd_without_top1"):  # the live teacher, no cached signals
        inputs = plan.training_inputs(name)
        assert inputs["teacher"] == f"{R}/models/teacher/model.pt"
        assert "teacher_signals" not in inputs
    paper = plan.comparison_manifest("soft_targets")["paper"]
    assert paper["rows"]["kd_without_top1"] == "87.49 / 26.43"


def test_the_knn_study_reads_the_teachers_stored_neighbours():
    config = base_config()
    config["study"] = "knn"
    config["knn"]["tune"] = None  # decoding with knn.decoding's k, λ and T
    plan = plan_of(config)
    assert list(plan.students) == ["baseline", "word_kd", "seq_kd", "selective_kd_global",
                                   "knn_kd"]
    assert plan.knn_model == "baseline"  # the paper's base model
    targets = f"{R}/knn/baseline/gold/targets.k64"
    assert plan.training_inputs("knn_kd")["knn_targets"] == targets
    assert plan.training_arguments("knn_kd") == ["--knn-targets", targets]
    assert plan.datastore_inputs("gold") == {
        "model": f"{R}/models/baseline/model.pt", "spm": f"{R}/spm/spm.model",
        "train_src": f"{R}/data/spm/train.en", "train_tgt": f"{R}/data/spm/train.de"}
    assert plan.knn_index_arguments() == [
        "--settings", '{"centroids": 4096, "code_size": 64, "nprobe": 32, "train_sample": 1000000, '
        '"type": "ivfpq"}']
    manifest = plan.comparison_manifest("knn")
    assert [m["name"] for m in manifest["models"]] == ["teacher", "knn_mt", "baseline",
                                                       "word_kd", "seq_kd",
                                                       "selective_kd_global", "knn_kd"]
    knn_mt = manifest["models"][1]
    assert knn_mt["knn_speed"] == f"{R}/speed/knn_mt.json" and knn_mt["ct2"] == {}
    assert knn_mt["significance"]["test_2016_flickr"] == (
        f"{R}/eval/knn_mt/test_2016_flickr.vs_baseline.significance.json")
    assert ("knn_mt", "baseline") in plan.tested_pairs()
    assert plan.significance_inputs("knn_mt", "baseline", "test_2016_flickr")["system"] == [
        f"{R}/translations/knn_mt/test_2016_flickr.float32.beam5.de"]
    assert knn_mt["eval"]["test_2017_mscoco"] == {
        "k1": f"{R}/eval/knn_mt/test_2017_mscoco.float32.beam1.json",
        "beam": f"{R}/eval/knn_mt/test_2017_mscoco.float32.beam5.json"}
    assert plan.knn_decoding_arguments() == ["--knn-k", "8", "--knn-lambda", "0.3",
                                             "--knn-temperature", "100"]
    assert plan.knn_mt_inputs()["index"] == f"{R}/knn/baseline/gold/index"
    assert plan.evaluation_metadata("knn_mt", "float32", 5)["decoding"] == (
        "torch beam search with kNN-MT (baseline, k 8, λ 0.3, T 100) beam 5")
    config["knn"].update(model="teacher", targets={"k": 64, "keep_self": False})
    plan = plan_of(config)
    assert plan.training_inputs("knn_kd")["knn_targets"] == (
        f"{R}/knn/teacher/gold/targets.k64.noself")
    assert plan.knn_targets_arguments() == ["--k", "64", "--exclude-self"]


def test_knn_tune_makes_knn_mt_read_its_result():
    config = base_config()
    config["study"] = "knn"
    config["knn"]["tune"] = {"k": [8, 16], "lambda": [0.3, 0.5], "temperature": [100]}
    plan = plan_of(config)
    tuned = f"{R}/knn/baseline/gold/knn_mt_tuned.json"
    assert plan.knn_tuned and plan.knn_tune_file() == tuned
    assert plan.knn_mt_inputs()["settings"] == tuned
    assert "settings" not in plan.knn_model_inputs()
    assert plan.knn_decoding_arguments() == ["--knn-settings", tuned]
    assert plan.knn_tune_arguments() == [
        "--grid", '{"k": [8, 16], "lambda": [0.3, 0.5], "temperature": [100]}']
    assert plan.comparison_manifest("knn")["models"][1]["loss"] == (
        "kNN-MT (baseline, k, λ and T tuned on valid by BLEU over k [8, 16] × λ [0.3, 0.5] × "
        "T [100])")
    config["knn"]["tune"] = None
    assert not plan_of(config).knn_tuned


@pytest.mark.parametrize(("change", "expected"), [
    (lambda c: c["knn"].update(tune={"k": [8], "lambda": [1.5], "temperature": [10]}),
     "config error at knn.tune.lambda[0]: 1.5 is greater than the maximum of 1"),
    (lambda c: c["knn"].update(tune={"k": [8], "lambda": [0.3]}),
     "config error at knn.tune: 'temperature' is a required property"),
    (lambda c: c["knn"].update(model="word_kd_full"),
     "config error at knn.model: 'word_kd_full' is not a model of this run (known: baseline, "
     "knn_kd, selective_kd_global, seq_kd, teacher, word_kd; a student must be in a selected"),
    (lambda c: c["knn"].update(model="knn_kd"),
     "config error at knn.model: 'knn_kd' cannot key the datastore it learns from"),
    (lambda c: c["knn"]["targets"].update(k=32),
     "config error at students[18].loss: reads 64 neighbours per token, knn.targets.k stores 32"),
    (lambda c: c["knn"]["index"].update(type="hnsw"),
     "config error at knn.index.type: 'hnsw' is not one of"),
    (lambda c: c["knn"]["index"].update(code_size=48),
     "config error at knn.index.code_size: 48 does not divide the key dimension 256 (d_model "
     "of 'baseline')"),
])
def test_knn_errors_name_their_key(change, expected):
    config = base_config()
    config["study"] = "knn"
    change(config)
    assert_plan_fails(config, expected)


@pytest.mark.parametrize(("change", "expected"), [
    (lambda c: c.update(study="word_levle"),
     "config error at study: unknown study 'word_levle' (known: kim_rush, word_level, "
     "tie_kd_ablation, soft_targets, knn)"),
    (lambda c: c["studies"]["word_level"]["students"].append("tie_kdd"),
     "config error at studies.word_level.students[7]: unknown student 'tie_kdd'"),
    (lambda c: c["studies"]["word_level"].update(baseline="seqkd_seqinter"),
     "config error at studies.word_level.baseline: 'seqkd_seqinter' is not among the study's"),
    (lambda c: c["students"].append({"name": "lonely", "data": "gold", "loss": "nll"}),
     "config error at students[19]: 'lonely' is in no study: add it to the students of one "
     "of studies.kim_rush, studies.word_level, studies.tie_kd_ablation, studies.soft_targets, "
     "studies.knn"),
    (lambda c: c["students"][11].update(loss={"name": "tie_kd", "iterations": 0}),
     "config error at students[11].loss: loss.iterations must be a whole number of at least 1"),
])
def test_study_errors_name_their_key(change, expected):
    config = base_config()
    change(config)
    assert_plan_fails(config, expected)


def _with(change):
    config = base_config()
    change(config)
    return config


def _init_loop(config):
    config["students"][3]["init"] = "seqkd_seqinter"  # baseline_seqinter
    config["students"][4]["init"] = "baseline_seqinter"  # seqkd_seqinter


@pytest.mark.parametrize(("config", "expected"), [
    (_with(lambda c: c["teachers"][0].update(preset="huge")),
     "config error at teachers[0].preset: unknown preset 'huge'"),
    (_with(_init_loop), "the init chain of 'baseline_seqinter' loops back"),
    (_with(lambda c: c["students"].append(dict(c["students"][0]))),
     "config error at students[19].name: 'baseline' is used by an earlier student"),
    (_with(lambda c: c["students"][2].update(data="seqkdd")),
     "config error at students[2].data: unknown data variant 'seqkdd'"),
    (_with(lambda c: c["students"][1].update(loss="wordkd")),
     "config error at students[1].loss: unknown loss 'wordkd'"),
    (_with(lambda c: c["losses"]["word_kd"].update(temprature=2)),
     "unexpected keyword argument 'temprature'"),
    (_with(lambda c: c["studies"]["kim_rush"]["students"].append("nobody")),
     "config error at studies.kim_rush.students[7]: unknown student 'nobody'"),
    (_with(lambda c: c.update(study="knn") or c["knn"].update(model="nobody")),
     "config error at knn.model: 'nobody' is not a model of this run"),
], ids=["unknown-preset", "init-loop", "duplicate-student", "unknown-variant", "unknown-loss",
        "loss-parameter-typo", "unknown-student-in-a-study", "unknown-knn-model"])
def test_check_config_refuses_what_the_workflow_refuses(config, expected):
    """Each config that `nmtkd check-config` called valid before (issue 22): the plan and
    check-config (assert_plan_fails runs both) refuse it with the same one line."""
    assert_plan_fails(config, expected)
