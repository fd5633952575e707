"""The resolved plan: a validated config turned into models, their corpora, losses, resources
and every path of an experiment. All config checks that the schema cannot express live here,
once, each failing with `config error at <key>: ...`; the workflow's rules only read the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmtkd.configfiles import deep_merge
from nmtkd.criteria import TEACHER_MODEL, TEACHER_SIGNALS, Criterion, build_criterion
from nmtkd.errors import NmtkdError
from nmtkd.variants import PART_FILES

TEACHER = "teacher"
DEFAULT_MAX_POSITIONS = 1024


class ConfigError(NmtkdError):
    def __init__(self, key: str, message: str):
        super().__init__(f"config error at {key}: {message}")
        self.key = key


@dataclass(frozen=True)
class Resources:
    threads: int
    mem_mb: int
    runtime: int


@dataclass(frozen=True)
class ModelPlan:
    """One model to train (or reuse): its architecture, trainer settings and training data."""

    name: str
    preset: str
    architecture: dict[str, Any]
    training: dict[str, Any]  # merged trainer settings, the loss with its defaults filled in
    parts: tuple[str, ...]  # corpus parts, concatenated in this order
    resources: Resources
    processes: int = 1
    init: str | None = None

    @property
    def loss_name(self) -> str:
        return self.training["loss"]["name"]

    @property
    def criterion(self) -> Criterion:
        """The loss, built from its settings (unbound: without the teacher it may need)."""
        return build_criterion(self.training["loss"])

    @property
    def needs(self) -> frozenset[str]:
        """What its criterion needs from the teacher (see nmtkd.criteria.base)."""
        return self.criterion.needs

    @property
    def gpus(self) -> int:
        """GPUs to request: one per process on CUDA, none otherwise."""
        return self.processes if self.training["device"] == "cuda" else 0

    @property
    def variant(self) -> str:
        return "+".join(self.parts)

    @property
    def max_positions(self) -> int:
        return self.architecture.get("max_positions", DEFAULT_MAX_POSITIONS)


@dataclass(frozen=True)
class Plan:
    config: dict[str, Any]
    teacher: ModelPlan
    students: dict[str, ModelPlan]
    baseline: str | None
    speed_testset: str
    existing: dict[str, str] = field(default_factory=dict)

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
    def models(self) -> list[str]:
        return [TEACHER, *self.students]

    @property
    def variants(self) -> list[str]:
        """Student corpora to build (gold alone is the teacher's own encoded data)."""
        return sorted({student.variant for student in self.students.values()} - {"gold"})

    @property
    def beam(self) -> int:
        return self.config["evaluation"]["beam_size"]

    @property
    def beams(self) -> list[int]:
        """K=1 (greedy) and K=beam, as in Kim & Rush's tables."""
        return sorted({1, self.beam})

    # ---- the teacher ---------------------------------------------------------------------------
    @property
    def teacher_is_ct2_only(self) -> bool:
        return "ct2_model" in self.existing and "checkpoint" not in self.existing

    @property
    def teacher_is_trained(self) -> bool:
        return "checkpoint" not in self.existing and not self.teacher_is_ct2_only

    def spm_model(self) -> str:
        """The SentencePiece model of the run: the existing teacher's, else the trained one."""
        if "spm" in self.existing:
            return self.existing["spm"]
        if "ct2_model" in self.existing:
            return str(Path(self.existing["ct2_model"]) / "spm.model")
        return f"{self.results}/spm/spm.model"

    def torch_checkpoint(self, model: str) -> str:
        if model == TEACHER and "checkpoint" in self.existing:
            return self.existing["checkpoint"]
        return f"{self.results}/models/{model}/model.pt"

    def ct2_model(self, model: str, quant: str) -> str:
        """A model's CTranslate2 directory for one quantization. A teacher given only as a CT2
        model is quantized when loaded (`compute_type`) instead."""
        if model == TEACHER and self.teacher_is_ct2_only:
            return self.existing["ct2_model"]
        return f"{self.results}/models/{model}/ct2_{quant}"

    def compute_type(self, model: str, quant: str) -> str:
        if model == TEACHER and self.teacher_is_ct2_only and quant != "float32":
            return quant
        return "default"

    def teacher_exports(self) -> list[str]:
        if self.teacher_is_ct2_only:
            return []
        return [self.ct2_model(TEACHER, q) for q in self.config["export"]["quantizations"]]

    # ---- corpora -------------------------------------------------------------------------------
    def part_files(self) -> dict[str, str]:
        """The file each corpus part reads its targets from."""
        results, tgt = self.results, self.tgt
        return {"gold": f"{results}/data/clean/train.{tgt}",
                "seqkd": f"{results}/distill/seqkd.{tgt}",
                "seqinter": f"{results}/distill/seqinter.{tgt}",
                "best2": f"{results}/distill/nbest.tsv"}

    def corpus_inputs(self, variant: str) -> dict[str, str]:
        inputs = {"source": f"{self.results}/data/clean/train.{self.src}",
                  "spm": self.spm_model()}
        files = self.part_files()
        for part in variant.split("+"):
            inputs[part] = files[part]
        return inputs

    def corpus_arguments(self, variant: str) -> list[str]:
        """`nmtkd corpus` arguments naming the parts and their files."""
        parts = variant.split("+")
        files = self.part_files()
        args = ["--parts", *parts]
        for part in dict.fromkeys(parts):
            args += [f"--{PART_FILES[part]}", files[part]]
        return args

    def training_corpus(self, model: ModelPlan) -> dict[str, str]:
        """Encoded training data: the teacher's own for gold alone (so that the teacher and
        the gold students become ready together, and the teacher's priority counts)."""
        return self.encoded_corpus(model.variant)

    # ---- training ------------------------------------------------------------------------------
    def training_inputs(self, name: str) -> dict[str, str]:
        model = self.model(name)
        results = self.results
        inputs = {**self.training_corpus(model),
                  "valid_src": f"{results}/data/spm/valid.{self.src}",
                  "valid_tgt": f"{results}/data/spm/valid.{self.tgt}",
                  "valid_ref": f"{results}/data/raw/valid.{self.tgt}",
                  "spm": self.spm_model()}
        needs = model.needs
        if TEACHER_MODEL in needs:
            inputs["teacher"] = self.torch_checkpoint(TEACHER)
        if TEACHER_SIGNALS in needs:
            inputs["teacher_signals"] = self.teacher_signals(model.variant,
                                                             model.criterion.signals_k)
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
                 "teacher_signals": "--teacher-signals"}
        return [item for key, flag in flags.items() if key in inputs
                for item in (flag, inputs[key])]

    # ---- teacher signals -----------------------------------------------------------------------
    def teacher_signals(self, variant: str, k: int) -> str:
        """The teacher's top-k on a student corpus (one artifact per corpus and k)."""
        return f"{self.results}/signals/{TEACHER}/{variant}.top{k}"

    def encoded_corpus(self, variant: str) -> dict[str, str]:
        """The encoded corpus of a variant (gold: the teacher's own training data)."""
        stem = "data/spm/train" if variant == "gold" else f"data/spm/variants/{variant}"
        return {"train_src": f"{self.results}/{stem}.{self.src}",
                "train_tgt": f"{self.results}/{stem}.{self.tgt}"}

    def model(self, name: str) -> ModelPlan:
        return self.teacher if name == TEACHER else self.students[name]

    # ---- evaluation and tables -----------------------------------------------------------------
    @property
    def has_agreement(self) -> bool:
        """Top-1 Agreement needs the teacher's torch model."""
        return not self.teacher_is_ct2_only

    def description(self, name: str) -> dict[str, str]:
        model = self.model(name)
        return {"data": model.variant, "loss": model.loss_name, "init": model.init or ""}

    def training_benchmark(self, name: str) -> str:
        if name == TEACHER:
            return f"{self.results}/benchmarks/train_teacher.tsv"
        return f"{self.results}/benchmarks/train_student/{name}.tsv"

    def model_results(self, name: str) -> dict[str, Any]:
        """One model's entry of the comparison manifest: the files its row is read from."""
        results, quants = self.results, self.config["export"]["quantizations"]
        trained = name != TEACHER or self.teacher_is_trained
        ct2 = {q: None if name == TEACHER and self.teacher_is_ct2_only else
               f"{results}/models/{name}/ct2_{q}" for q in ("float32", "int8") if q in quants}
        if name == TEACHER and self.teacher_is_ct2_only:
            ct2["float32"] = self.existing["ct2_model"]
        evaluations = f"{results}/eval/{name}"
        return {
            "name": name, **self.description(name),
            "training": f"{results}/models/{name}/training.json" if trained else None,
            "benchmark": self.training_benchmark(name) if trained else None,
            "ct2": ct2,
            "speed": {q: f"{results}/speed/{name}.{q}.json"
                      for q in ("float32", "int8") if q in quants},
            "eval": {testset: {
                "k1": f"{evaluations}/{testset}.float32.beam1.json",
                "beam": f"{evaluations}/{testset}.float32.beam{self.beam}.json",
                **({"int8": f"{evaluations}/{testset}.int8.beam{self.beam}.json"}
                   if "int8" in quants else {}),
            } for testset in self.testsets},
            "agreement": {testset: f"{evaluations}/{testset}.agreement.json"
                          for testset in self.testsets} if self.has_agreement else {},
        }

    def comparison_manifest(self) -> dict[str, Any]:
        """Every model's result files, for `nmtkd compare`."""
        speed = self.config["evaluation"]["speed"]
        timing = ("one timed run" if speed["repeats"] == 1
                  else f"fastest of {speed['repeats']} timed runs")
        return {"experiment": self.experiment, "teacher": TEACHER, "baseline": self.baseline,
                "beam_size": self.beam, "testsets": self.testsets,
                "speed_testset": self.speed_testset,
                "models": [self.model_results(name) for name in self.models],
                "speed_settings": f"beam {speed['beam_size']}, batch {speed['batch_size']}, "
                                  f"{speed['threads']} threads, {timing}"}

    def comparison_inputs(self) -> list[str]:
        """Every file of this experiment the manifest names (directories included)."""
        files: list[str] = []

        def collect(value: Any) -> None:
            if isinstance(value, dict):
                for item in value.values():
                    collect(item)
            elif isinstance(value, str) and value.startswith(self.results):
                files.append(value)

        for model in self.comparison_manifest()["models"]:
            collect({k: v for k, v in model.items() if k not in ("name", "data", "loss", "init")})
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
    from nmtkd.plan_checks import (
        check_existing_teacher,
        check_general,
        check_student_entries,
        check_teacher_training,
    )

    teacher = teacher_plan(config)
    check_general(config, teacher)
    testsets = list(config["data"]["test"])
    speed_testset = config["evaluation"]["speed"].get("testset") or testsets[0]
    if speed_testset not in testsets:
        raise ConfigError("evaluation.speed.testset", f"unknown test set {speed_testset!r} "
                          f"(known: {', '.join(testsets)})")
    existing = dict(config["teacher"].get("existing") or {})
    check_existing_teacher(existing)
    check_teacher_training(config, teacher, existing)
    students = student_plans(config)
    check_student_entries(config, teacher, students, existing)
    return Plan(config=config, teacher=teacher, students=students,
                baseline=default_baseline(config, students), speed_testset=speed_testset,
                existing=existing)


def resolve_loss(config: dict[str, Any], spec: str | dict[str, Any]) -> dict[str, Any]:
    """A loss entry (a name or {name, parameters}) with the `losses` defaults under it."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    return {**config["losses"].get(spec["name"], {}), **spec}


def section_resources(config: dict[str, Any], section: dict[str, Any]) -> Resources:
    defaults = config["resources"]
    own = section.get("resources", {})
    return Resources(**{key: own.get(key, defaults[key])
                        for key in ("threads", "mem_mb", "runtime")})


def teacher_plan(config: dict[str, Any]) -> ModelPlan:
    section = config[TEACHER]
    training = deep_merge(config["training"], section.get("training", {}))
    return ModelPlan(name=TEACHER, preset=section["preset"],
                     architecture=config["presets"].get(section["preset"], {}),
                     training=training, parts=("gold",),
                     resources=section_resources(config, section),
                     processes=section.get("processes", 1))


def student_training(config: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """A student's trainer settings. Its loss: `loss:`, else its own `training.loss`, else the
    name of the global `training.loss`; the `losses` defaults go under each of them, so a
    student without `loss:` trains exactly like one with `loss: nll`."""
    training = deep_merge(config["training"], entry.get("training", {}))
    if "loss" in entry:
        spec = entry["loss"]
    elif "loss" in entry.get("training", {}):
        spec = training["loss"]
    else:
        spec = training["loss"]["name"]
    training["loss"] = resolve_loss(config, spec)
    return training


def student_entry(config: dict[str, Any], index: int) -> dict[str, Any]:
    """A student's settings: `student_defaults` with the list entry's own keys on top."""
    return deep_merge(config.get("student_defaults", {}), config["students"][index])


def student_plans(config: dict[str, Any]) -> dict[str, ModelPlan]:
    from nmtkd.plan_checks import check_student_names

    check_student_names(config)
    students = {}
    for index in range(len(config.get("students", []))):
        entry = student_entry(config, index)
        data = entry["data"]
        students[entry["name"]] = ModelPlan(
            name=entry["name"], preset=entry["preset"],
            architecture=config["presets"].get(entry["preset"], {}),
            training=student_training(config, entry),
            parts=(data,) if isinstance(data, str) else tuple(data),
            resources=section_resources(config, entry),
            processes=entry.get("processes", 1), init=entry.get("init"))
    return students


def default_baseline(config: dict[str, Any], students: dict[str, ModelPlan]) -> str | None:
    """The comparison's baseline: as configured, else the first student trained from scratch
    on gold data with the plain NLL loss."""
    if "baseline" in config.get("comparison", {}):
        return config["comparison"]["baseline"]
    for name, student in students.items():
        if student.parts == ("gold",) and student.init is None and student.loss_name == "nll":
            return name
    return None

