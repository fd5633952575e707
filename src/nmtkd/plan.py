"""The resolved plan: a validated config turned into models (teachers and students), their
corpora, criteria, resources and every path of an experiment. All config checks that the
schema cannot express live here (and in nmtkd.plan_checks), once, each failing with
`config error at <key>: ...`; the workflow's rules only read the plan.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmtkd.criteria import KNN_TARGETS, TEACHER_MODEL, TEACHER_SIGNALS
from nmtkd.plan_models import (
    DEFAULT_MAX_POSITIONS,
    TEACHER,
    ConfigError,
    ModelPlan,
    Resources,
    seed_runs,
    student_plans,
    teacher_plans,
)
from nmtkd.studies import Study, configured_studies, needed_students, selected_names

KNN_MT = "knn_mt"  # the kNN-MT row: its translations, evaluations and speed file

__all__ = ["DEFAULT_MAX_POSITIONS", "KNN_MT", "TEACHER", "ConfigError", "ModelPlan", "Plan",
           "Resources", "build_plan", "plan_config", "read_workflow_plan"]


@dataclass(frozen=True)
class Plan:
    config: dict[str, Any]
    teachers: dict[str, ModelPlan]  # the first is the primary: the tables compare against it
    students: dict[str, ModelPlan]  # one per run: <student>, or <student>/seed<k> per seed
    studies: dict[str, Study]  # the selected studies: each its tables, plots and baseline
    speed_testset: str

    # ---- names ---------------------------------------------------------------------------------
    @property
    def experiment(self) -> str:
        return self.config["experiment"]

    @property
    def results(self) -> str:
        return f"results/{self.experiment}"

    @property
    def src(self) -> str:
        return self.config["data"]["src_lang"]

    @property
    def tgt(self) -> str:
        return self.config["data"]["tgt_lang"]

    @property
    def testsets(self) -> list[str]:
        return list(self.config["data"]["test"])

    @property
    def teacher(self) -> ModelPlan:
        """The primary teacher (the first): speed-ups and the teacher table refer to it."""
        return next(iter(self.teachers.values()))

    @property
    def models(self) -> list[str]:
        return [*self.teachers, *self.students]

    @property
    def corpora(self) -> list[str]:
        """Student corpora to build (gold alone is the teachers' own encoded data)."""
        return sorted({student.corpus for student in self.students.values()} - {"gold"})

    @property
    def distilling_teachers(self) -> list[str]:
        """Teachers whose beam search makes student data."""
        return [name for name in self.teachers
                if any(s.teacher == name and s.distilled for s in self.students.values())]

    @property
    def beam(self) -> int:
        return self.config["evaluation"]["beam_size"]

    @property
    def beams(self) -> list[int]:
        """K=1 (greedy) and K=beam, as in Kim & Rush's tables."""
        return sorted({1, self.beam})

    # ---- teachers and model files -------------------------------------------------------------
    def spm_model(self) -> str:
        """The SentencePiece model of the run (every model shares it): an existing teacher's,
        else the one trained on the gold data."""
        given = [t.spm_file for t in self.teachers.values() if t.spm_file is not None]
        return given[0] if given else f"{self.results}/spm/spm.model"

    def torch_checkpoint(self, name: str) -> str:
        existing = self.model(name).existing
        return existing.get("checkpoint") or f"{self.results}/models/{name}/model.pt"

    def ct2_model(self, name: str, quant: str) -> str:
        """A model's CTranslate2 directory for one quantization. A teacher given only as a CT2
        model is quantized when loaded (`compute_type`) instead."""
        if self.model(name).ct2_only:
            return self.model(name).existing["ct2_model"]
        return f"{self.results}/models/{name}/ct2_{quant}"

    def compute_type(self, name: str, quant: str) -> str:
        if self.model(name).ct2_only and quant != "float32":
            return quant
        return "default"

    def decodes_with_torch(self, quant: str, job: str) -> bool:
        """Whether a decoding job (`job`: evaluation or distill) runs the torch beam search:
        its backend is torch and the output float32 (quantized models are CTranslate2's)."""
        return self.config[job]["backend"] == "torch" and quant == "float32"

    def decoder_inputs(self, name: str, quant: str, job: str) -> dict[str, str]:
        """The model files a decoding job reads: the torch checkpoint and SentencePiece model
        for the torch beam search, else the CTranslate2 directory."""
        if self.decodes_with_torch(quant, job):
            return {"model": self.torch_checkpoint(name), "spm": self.spm_model()}
        return {"model": self.ct2_model(name, quant)}

    def decoder_arguments(self, name: str, quant: str, job: str) -> list[str]:
        """`nmtkd translate` arguments choosing the backend (see `decoder_inputs`)."""
        if self.decodes_with_torch(quant, job):
            return ["--backend", "torch", "--spm", self.spm_model()]
        return ["--compute-type", self.compute_type(name, quant)]

    # ---- speed -------------------------------------------------------------------------------
    def speed_groups(self, study: str | None = None) -> dict[str, list[str]]:
        """Models measured together: a study's models of one preset (architecture)."""
        groups: dict[str, list[str]] = {}
        for name in self.study_models(study):
            groups.setdefault(self.model(name).preset, []).append(name)
        return groups

    @property
    def presets(self) -> list[str]:
        return list(dict.fromkeys(self.model(name).preset for name in self.models))

    def speed_file(self, study: str, preset: str, quant: str) -> str:
        return f"{self.results}/speed/{study}/{preset}.{quant}.json"

    def speed_models(self, study: str, preset: str, quant: str) -> dict[str, dict[str, str]]:
        """`nmtkd speed --models`: each model of a study's preset, its CT2 directory and
        compute type."""
        return {name: {"model": self.ct2_model(name, quant),
                       "compute_type": self.compute_type(name, quant)}
                for name in self.speed_groups(study)[preset]}

    def length_bound_arguments(self) -> list[str]:
        """`nmtkd translate` / `speed` arguments: the source-relative length bound."""
        decoding = self.config["decoding"]
        return ["--max-len-a", str(decoding["max_len_a"]),
                "--max-len-b", str(decoding["max_len_b"])]

    def decoder_name(self, quant: str, job: str) -> str:
        return "torch beam search" if self.decodes_with_torch(quant, job) else "CTranslate2"

    def signals_inputs(self, teacher: str, corpus: str) -> dict[str, str]:
        """What the teacher-signals job reads: the teacher and a corpus."""
        return {"model": self.torch_checkpoint(teacher), "spm": self.spm_model(),
                **self.encoded_corpus(corpus)}

    def teacher_agreements(self) -> list[str]:
        """The first teacher's teacher-forced top-1 against the references, on its training
        data and each test set (none for a teacher given only as a CTranslate2 model)."""
        name = self.teacher.name
        if not self.has_agreement(name):
            return []
        evaluations = f"{self.results}/eval/{name}"
        return [f"{evaluations}/train.agreement.json",
                *(f"{evaluations}/{testset}.agreement.json" for testset in self.testsets)]

    def teacher_exports(self) -> list[str]:
        return [self.ct2_model(name, q) for name, teacher in self.teachers.items()
                if not teacher.ct2_only for q in self.config["export"]["quantizations"]]

    # ---- corpora -------------------------------------------------------------------------------
    def distilled_file(self, teacher: str, name: str) -> str:
        """A file of a teacher's distillation: seqkd.<tgt>, nbest.tsv, seqinter.<tgt>."""
        return f"{self.results}/distill/{teacher}/{name}"

    def part_pairs(self, teacher: str | None) -> dict[str, tuple[str, str]]:
        """The (source, target) text files of each corpus part (distilled ones: `teacher`'s)."""
        source = f"{self.results}/data/clean/train.{self.src}"
        pairs = {"gold": (source, f"{self.results}/data/clean/train.{self.tgt}")}
        if teacher is not None:
            pairs.update({
                "seqkd": (source, self.distilled_file(teacher, f"seqkd.{self.tgt}")),
                "seqinter": (source, self.distilled_file(teacher, f"seqinter.{self.tgt}")),
                "best2": (self.distilled_file(teacher, f"best2.{self.src}"),
                          self.distilled_file(teacher, f"best2.{self.tgt}"))})
        return pairs

    @staticmethod
    def corpus_parts(corpus: str) -> tuple[str | None, list[str]]:
        """A corpus name's teacher (None without distilled parts) and parts."""
        teacher, _, variant = corpus.rpartition("/")
        return teacher or None, variant.split("+")

    def corpus_inputs(self, corpus: str) -> dict[str, Any]:
        """`nmtkd corpus` inputs: the SentencePiece model and each part's file pair, in order."""
        teacher, parts = self.corpus_parts(corpus)
        pairs = [self.part_pairs(teacher)[part] for part in parts]
        return {"spm": self.spm_model(), "sources": [source for source, _ in pairs],
                "targets": [target for _, target in pairs]}

    def encoded_corpus(self, corpus: str) -> dict[str, str]:
        """The encoded files of a corpus (gold: the teachers' own training data, so that the
        teacher and the gold students become ready together)."""
        stem = "data/spm/train" if corpus == "gold" else f"data/spm/variants/{corpus}"
        return {"train_src": f"{self.results}/{stem}.{self.src}",
                "train_tgt": f"{self.results}/{stem}.{self.tgt}"}

    # ---- training ------------------------------------------------------------------------------
    def model(self, name: str) -> ModelPlan:
        return self.teachers[name] if name in self.teachers else self.students[name]

    def training_inputs(self, name: str) -> dict[str, str]:
        model = self.model(name)
        results = self.results
        inputs = {**self.encoded_corpus(model.corpus),
                  "valid_src": f"{results}/data/spm/valid.{self.src}",
                  "valid_tgt": f"{results}/data/spm/valid.{self.tgt}",
                  "valid_ref": f"{results}/data/raw/valid.{self.tgt}",
                  "spm": self.spm_model()}
        needs = model.needs
        if TEACHER_MODEL in needs:
            inputs["teacher"] = self.torch_checkpoint(model.teacher)
        if TEACHER_SIGNALS in needs:
            inputs["teacher_signals"] = self.teacher_signals(model.teacher, model.corpus,
                                                             model.criterion.signals_k)
        if KNN_TARGETS in needs:
            inputs["knn_targets"] = self.knn_file(model.corpus, "targets")
        if model.init:
            inputs["init"] = self.torch_checkpoint(model.init)
        return inputs

    def train_settings(self, name: str) -> dict[str, Any]:
        """`nmtkd train --settings`: the preset and trainer settings."""
        model = self.model(name)
        return {"model": model.architecture, "training": model.training}

    def training_arguments(self, name: str) -> list[str]:
        """`nmtkd train` arguments for the optional inputs: the initial weights and what the
        criterion needs from the teacher."""
        inputs = self.training_inputs(name)
        flags = {"init": "--init", "teacher": "--teacher",
                 "teacher_signals": "--teacher-signals", "knn_targets": "--knn-targets"}
        return [item for key, flag in flags.items() if key in inputs
                for item in (flag, inputs[key])]

    def teacher_signals(self, teacher: str, corpus: str, k: int) -> str:
        """A teacher's top-k on a student corpus (one artifact per teacher, corpus and k)."""
        return f"{self.results}/signals/{teacher}/{corpus}.top{k}"

    # ---- kNN datastores -------------------------------------------------------------------------
    @property
    def knn_model(self) -> str:
        """The model whose decoder states key the datastores (default: the first teacher)."""
        return self.config["knn"].get("model") or self.teacher.name

    def knn_file(self, corpus: str, kind: str) -> str:
        """A kNN artifact of a corpus: its datastore, index or (kNN-KD) targets directory."""
        if kind == "targets":
            targets = self.config["knn"]["targets"]
            kind = f"targets.k{targets['k']}" + ("" if targets["keep_self"] else ".noself")
        return f"{self.results}/knn/{self.knn_model}/{corpus}/{kind}"

    def datastore_inputs(self, corpus: str) -> dict[str, str]:
        """What the datastore job reads: the keying model, the SentencePiece model, a corpus."""
        return {"model": self.torch_checkpoint(self.knn_model), "spm": self.spm_model(),
                **self.encoded_corpus(corpus)}

    def knn_index_arguments(self) -> list[str]:
        return ["--settings", json.dumps(self.config["knn"]["index"], sort_keys=True)]

    @property
    def knn_mt_studied(self) -> bool:
        """Whether a selected study has the kNN-MT row."""
        return any(study.knn_mt for study in self.studies.values())

    @property
    def knn_tuned(self) -> bool:
        """Whether kNN-MT takes its k, λ and T from a grid search on the validation set."""
        return bool(self.config["knn"].get("tune"))

    def knn_tune_file(self) -> str:
        return f"{self.results}/knn/{self.knn_model}/gold/knn_mt_tuned.json"

    def knn_tune_arguments(self) -> list[str]:
        return ["--grid", json.dumps(self.config["knn"]["tune"], sort_keys=True)]

    def knn_settings_text(self) -> str:
        if self.knn_tuned:
            tune = self.config["knn"]["tune"]
            return (f"{self.knn_model}, k, λ and T tuned on valid by BLEU over k "
                    f"{tune['k']} × λ {tune['lambda']} × T {tune['temperature']}")
        decoding = self.config["knn"]["decoding"]
        return (f"{self.knn_model}, k {decoding['k']}, λ {decoding['lambda']}, "
                f"T {decoding['temperature']}")

    def knn_decoding_arguments(self) -> list[str]:
        """`nmtkd translate` / `knn-speed` arguments: kNN-MT's k, λ and T (or the tuning
        result that holds them)."""
        if self.knn_tuned:
            return ["--knn-settings", self.knn_tune_file()]
        decoding = self.config["knn"]["decoding"]
        return ["--knn-k", str(decoding["k"]), "--knn-lambda", str(decoding["lambda"]),
                "--knn-temperature", str(decoding["temperature"])]

    def knn_model_inputs(self) -> dict[str, str]:
        """The model, its datastore of the gold data and its index."""
        return {"model": self.torch_checkpoint(self.knn_model), "spm": self.spm_model(),
                "datastore": self.knn_file("gold", "datastore"),
                "index": self.knn_file("gold", "index")}

    def knn_mt_inputs(self) -> dict[str, str]:
        """What kNN-MT decoding reads: the model, datastore and index (and the tuning result,
        with knn.tune)."""
        tuned = {"settings": self.knn_tune_file()} if self.knn_tuned else {}
        return {**self.knn_model_inputs(), **tuned}

    def knn_mt_results(self, study: str) -> dict[str, Any]:
        """The kNN-MT row's manifest entry: float32 evaluations (torch beam search), its speed
        against the same model without retrieval, and its significance test against the
        study's baseline; no export or training."""
        evaluations, baseline = f"{self.results}/eval/{KNN_MT}", self.study(study).baseline
        return {
            "name": KNN_MT, "student": KNN_MT, "data": "gold (datastore)",
            "loss": f"kNN-MT ({self.knn_settings_text()})", "init": "",
            "parameters": None, "ct2": {}, "speed": {},
            "knn_speed": f"{self.results}/speed/{KNN_MT}.json",
            "eval": {testset: {"k1": f"{evaluations}/{testset}.float32.beam1.json",
                               "beam": f"{evaluations}/{testset}.float32.beam{self.beam}.json"}
                     for testset in self.testsets},
            "significance": {testset: self.significance_file(KNN_MT, baseline, testset)
                             for testset in self.testsets} if baseline else {},
        }

    def knn_targets_arguments(self) -> list[str]:
        targets = self.config["knn"]["targets"]
        return ["--k", str(targets["k"]), *([] if targets["keep_self"] else ["--exclude-self"])]

    # ---- studies -------------------------------------------------------------------------------
    def study(self, name: str | None = None) -> Study:
        """A selected study (default: the first)."""
        return self.studies[name] if name else next(iter(self.studies.values()))

    def study_models(self, study: str | None = None) -> list[str]:
        """A study's rows: every teacher, then each of its students' runs."""
        return [*self.teachers, *(run for student in self.study(study).students
                                  for run in self.runs_of(student))]

    @property
    def baseline_student(self) -> str | None:
        """The first study's baseline student."""
        return self.study().baseline

    def baseline_run(self, study: str | None = None) -> str | None:
        """The first run of a study's baseline student (default: the first study's)."""
        baseline = self.study(study).baseline
        runs = self.runs_of(baseline) if baseline else []
        return runs[0] if runs else None

    @property
    def baseline(self) -> str | None:
        return self.baseline_run()

    def runs_of(self, student: str) -> list[str]:
        """The models of a student: its one run, or one per seed."""
        return [name for name, run in self.students.items() if run.student == student]

    def tested_pairs(self) -> list[tuple[str, str]]:
        """(student, baseline) of every significance test: each study's students, and its kNN-MT
        row, against its baseline."""
        pairs = [(student, study.baseline) for study in self.studies.values()
                 if study.baseline
                 for student in [*([KNN_MT] if study.knn_mt else []), *study.students]
                 if student != study.baseline]
        return list(dict.fromkeys(pairs))

    # ---- evaluation and tables -----------------------------------------------------------------

    @property
    def bleu_tokenize(self) -> str:
        from nmtkd.evaluate import default_tokenize

        chosen = self.config["evaluation"]["tokenize"]
        return default_tokenize(self.tgt) if chosen == "auto" else chosen

    def scoring_arguments(self) -> list[str]:
        """`nmtkd evaluate` / `significance` arguments: the BLEU tokenizer and chrF order."""
        return ["--tokenize", self.bleu_tokenize,
                "--chrf-word-order", str(self.config["evaluation"]["chrf_word_order"])]

    @staticmethod
    def significance_metadata(student: str, baseline: str, testset: str) -> dict[str, str]:
        return {"system": student, "baseline": baseline, "testset": testset}

    def evaluation_metadata(self, model: str, quant: str, beam: str | int) -> dict[str, Any]:
        """What an evaluation JSON records of its decoding."""
        decoding = "greedy" if int(beam) == 1 else f"beam {beam}"
        decoder = self.decoder_name(quant, "evaluation")
        if model == KNN_MT:
            decoder = f"torch beam search with kNN-MT ({self.knn_settings_text()})"
        return {"decoding": f"{decoder} {decoding}", "compute_type": quant,
                "beam_size": int(beam)}

    def translation(self, name: str, testset: str, quant: str, beam: int) -> str:
        return f"{self.results}/translations/{name}/{testset}.{quant}.beam{beam}.{self.tgt}"

    def significance_file(self, student: str, baseline: str, testset: str) -> str:
        return f"{self.results}/eval/{student}/{testset}.vs_{baseline}.significance.json"

    def significance_inputs(self, student: str, baseline: str, testset: str) -> dict[str, Any]:
        """A student's (or kNN-MT's) and the baseline's K=beam float32 outputs (every run) and
        the references of one test set."""
        def outputs(of: str) -> list[str]:
            return [self.translation(run, testset, "float32", self.beam)
                    for run in ([KNN_MT] if of == KNN_MT else self.runs_of(of))]

        return {"system": outputs(student), "baseline": outputs(baseline),
                "references": f"{self.results}/data/raw/{testset}.{self.tgt}"}

    def reference_teacher(self, name: str) -> str:
        """The teacher a model is compared with (Top-1 Agreement): a student's own teacher; a
        teacher itself."""
        return self.model(name).teacher or name

    def has_agreement(self, name: str) -> bool:
        """Top-1 Agreement needs the torch models of the model and of its teacher."""
        return not (self.model(name).ct2_only or self.model(self.reference_teacher(name)).ct2_only)

    def description(self, name: str) -> dict[str, str]:
        """The Data, Loss and Init columns; a student of another than the primary teacher
        names its teacher after its data."""
        model = self.model(name)
        data = model.variant
        if model.distilled and model.teacher != self.teacher.name:
            data = f"{data} ({model.teacher})"
        init = self.model(model.init).student if model.init else ""
        return {"data": data, "loss": model.loss_name, "init": init}

    def training_benchmark(self, name: str) -> str:
        return f"{self.results}/benchmarks/train_model/{name}.tsv"

    def model_results(self, name: str, study: str) -> dict[str, Any]:
        """One model's entry of a study's manifest: the files its row is read from."""
        results, quants = self.results, self.config["export"]["quantizations"]
        model, baseline = self.model(name), self.study(study).baseline
        ct2 = {q: None if model.ct2_only else f"{results}/models/{name}/ct2_{q}"
               for q in ("float32", "int8") if q in quants}
        if model.ct2_only:
            ct2["float32"] = model.existing["ct2_model"]
        evaluations = f"{results}/eval/{name}"
        return {
            "name": name, **self.description(name),
            "student": model.student or name, "seed": model.training["seed"],
            "training": f"{results}/models/{name}/training.json" if model.trained else None,
            "benchmark": self.training_benchmark(name) if model.trained else None,
            "ct2": ct2,
            "speed": {q: self.speed_file(study, model.preset, q)
                      for q in ("float32", "int8") if q in quants},
            "speed_key": name,
            "eval": {testset: {
                "k1": f"{evaluations}/{testset}.float32.beam1.json",
                "beam": f"{evaluations}/{testset}.float32.beam{self.beam}.json",
                **({"int8": f"{evaluations}/{testset}.int8.beam{self.beam}.json"}
                   if "int8" in quants else {}),
            } for testset in self.testsets},
            "agreement": {testset: f"{evaluations}/{testset}.agreement.json"
                          for testset in self.testsets} if self.has_agreement(name) else {},
            "significance": {testset: self.significance_file(model.student, baseline, testset)
                             for testset in self.testsets}
            if baseline and name in self.students and model.student != baseline else {},
        }

    def study_rows(self, study: str) -> list[dict[str, Any]]:
        """The manifest entries of a study's rows: the teachers, kNN-MT, the students."""
        rows = [self.model_results(name, study) for name in self.study_models(study)]
        if self.study(study).knn_mt:
            rows.insert(len(self.teachers), self.knn_mt_results(study))
        return rows

    def comparison_manifest(self, study: str | None = None) -> dict[str, Any]:
        """A study's models and their result files, for `nmtkd compare`."""
        from nmtkd.speed import protocol_text

        chosen = self.study(study)
        speed = self.config["evaluation"]["speed"]
        timing = (protocol_text(speed["repeats"], speed["sentences"]) + "; the models of one "
                  "preset and quantization measured in one job")
        return {"experiment": self.experiment, "study": chosen.name, "paper": chosen.paper,
                "teacher": self.teacher.name,
                "baseline": self.baseline_run(chosen.name),
                "baseline_student": chosen.baseline,
                "bootstrap_samples": self.config["evaluation"]["significance"][
                    "bootstrap_samples"],
                "beam_size": self.beam, "testsets": self.testsets,
                "length_bound": "{max_len_a}·|x| + {max_len_b} pieces per batch".format(
                    **self.config["decoding"]),
                "speed_testset": self.speed_testset,
                "models": self.study_rows(chosen.name),
                "speed_settings": f"beam {speed['beam_size']}, batch {speed['batch_size']}, "
                                  f"{speed['threads']} threads, {timing}"}

    # ---- plots -----------------------------------------------------------------------------------
    def table_file(self, study: str, fmt: str) -> str:
        return f"{self.results}/tables/{study}.{fmt}"

    def plot_names(self) -> list[str]:
        """BLEU against speed per exported quantization, against size, validation curves, TA
        against BLEU."""
        quants = self.config["export"]["quantizations"]
        names = [f"bleu_speed_{q}" for q in ("float32", "int8") if q in quants]
        return names + ["bleu_size", "validation_curves", "agreement_bleu"]

    def plot_files(self, study: str, fmt: str) -> list[str]:
        """A study's plots: `results/<experiment>/plots/<study>/<plot>.<fmt>`."""
        return [f"{self.results}/plots/{study}/{name}.{fmt}" for name in self.plot_names()]

    def training_summaries(self, study: str | None = None) -> dict[str, str]:
        """Each trained run of a study's `training.json` (its validation history), by run."""
        return {name: f"{self.results}/models/{name}/training.json"
                for name in self.study_models(study) if self.model(name).trained}

    def selection_plot(self, study: str, fmt: str) -> list[str]:
        """Selective KD's threshold and share per update, for a study with such students."""
        selective = any(self.model(name).loss_name == "selective_kd"
                        for name in self.study_models(study))
        return [f"{self.results}/plots/{study}/selection.{fmt}"] if selective else []

    def report_targets(self) -> list[str]:
        """What `all` builds of the selected studies: their tables and plots."""
        return [path for study in self.studies for path in (
            self.table_file(study, "md"), *self.plot_files(study, "png"),
            *self.selection_plot(study, "png"))]

    def plot_context(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "teacher": self.teacher.name, "beam": self.beam,
                "speed_testset": self.speed_testset}

    def comparison_inputs(self, study: str | None = None) -> list[str]:
        """Every file of this experiment a study's manifest names (directories included)."""
        files: list[str] = []

        def collect(value: Any) -> None:
            if isinstance(value, dict):
                for item in value.values():
                    collect(item)
            elif isinstance(value, str) and value.startswith(self.results):
                files.append(value)

        for model in self.comparison_manifest(study)["models"]:
            collect({k: v for k, v in model.items()
                     if k not in ("name", "data", "loss", "init", "student")})
        return files

    # ---- data ----------------------------------------------------------------------------------
    def cleaning_flags(self) -> list[str]:
        rules = self.config["cleaning"]
        flags = ["--drop-src-equals-tgt"] if rules["drop_src_equals_tgt"] else []
        return flags + ([] if rules["deduplicate"] else ["--keep-duplicates"])

    def encode_input(self, split: str, lang: str) -> str:
        """The text SentencePiece encodes: the cleaned training data, the raw validation set."""
        folder = "clean" if split == "train" else "raw"
        return f"{self.results}/data/{folder}/{split}.{lang}"

    def fetch_arguments(self, split: str) -> list[str]:
        """Arguments of `nmtkd fetch` for one dataset of the config."""
        data = self.config["data"]
        spec = data[split] if split in ("train", "valid") else data["test"][split]
        if isinstance(spec, str):  # sacrebleu:<testset>
            spec = {"src": spec, "tgt": spec}
        args = ["--src", spec["src"], "--tgt", spec["tgt"], "--langpair", f"{self.src}-{self.tgt}"]
        for side in ("src", "tgt"):
            if spec.get(f"{side}_sha256"):
                args += [f"--{side}-sha256", spec[f"{side}_sha256"]]
        if data.get("mirror"):
            args += ["--mirror", data["mirror"]]
        return args


def build_plan(config: dict[str, Any]) -> Plan:
    """Check a schema-valid config (defaults filled in) and resolve it into a plan."""
    from nmtkd.plan_checks import check_general, check_knn, check_students, check_teachers

    teachers = teacher_plans(config)
    check_general(config, teachers)
    testsets = list(config["data"]["test"])
    speed_testset = config["evaluation"]["speed"].get("testset") or testsets[0]
    if speed_testset not in testsets:
        raise ConfigError("evaluation.speed.testset", f"unknown test set {speed_testset!r} "
                          f"(known: {', '.join(testsets)})")
    check_teachers(config, teachers)
    students = student_plans(config, teachers)
    studies = configured_studies(config, students)
    selected = {name: studies[name] for name in selected_names(config, studies)}
    needed = needed_students(list(selected.values()), students)
    check_students(config, teachers, students, needed)
    runs = seed_runs({name: students[name] for name in needed})
    check_knn(config, teachers, runs, any(study.knn_mt for study in selected.values()))
    return Plan(config=config, teachers=teachers, students=runs, studies=selected,
                speed_testset=speed_testset)


def read_workflow_plan(default: str | Path | None, overrides: Sequence[str | Path],
                       command_line: Mapping[str, Any] | None, schema: str | Path) -> Plan:
    """The plan of a workflow run, with every check the run makes: `default` (config.yaml, if
    there is one) with each --configfile on top, then --config values, checked and completed
    with the schema's defaults (`read_workflow_config`), then planned. The workflow,
    `nmtkd check-config` and `compare/plots --config` all go through it."""
    from nmtkd.configfiles import read_workflow_config

    return build_plan(read_workflow_config(default, overrides, command_line, schema))


def plan_config(config: Mapping[str, Any], schema: str | Path | Mapping[str, Any],
                command_line: Mapping[str, Any] | None = None) -> Plan:
    """The plan of an already merged config: checked, completed with the schema's defaults
    (`resolve_config`) and planned; `config` itself is left as it is."""
    from nmtkd.configfiles import resolve_config

    return build_plan(resolve_config(config, schema, command_line))
