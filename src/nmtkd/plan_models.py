"""The models of a plan: teachers and students resolved from their config entries (presets,
merged trainer settings, losses with their defaults, corpora, resources)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nmtkd.configfiles import deep_merge
from nmtkd.corpora import DISTILLED_PARTS
from nmtkd.criteria import Criterion, build_criterion
from nmtkd.errors import NmtkdError

TEACHER = "teacher"  # the name of the teacher given by the `teacher:` shorthand
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
    key: str  # where it is configured, for error messages: teachers[0], students[2], ...
    preset: str
    architecture: dict[str, Any]
    training: dict[str, Any]  # merged trainer settings, the loss with its defaults filled in
    parts: tuple[str, ...]  # corpus parts, concatenated in this order
    resources: Resources
    processes: int = 1
    init: str | None = None
    teacher: str | None = None  # a student's teacher (whose distilled data and signals it uses)
    existing: dict[str, str] = field(default_factory=dict)  # a teacher that is not trained
    seeds: tuple[int, ...] = ()  # a student's `seeds:` (its runs), empty for one run
    student: str = ""  # a run of several seeds: the student's config name

    @property
    def is_teacher(self) -> bool:
        return self.teacher is None

    @property
    def ct2_only(self) -> bool:
        """A teacher given only as a CTranslate2 model (no torch checkpoint)."""
        return "ct2_model" in self.existing and "checkpoint" not in self.existing

    @property
    def spm_file(self) -> str | None:
        """The SentencePiece model an existing teacher brings: given beside its checkpoint, or
        inside its CTranslate2 directory; None for a model trained here."""
        if "spm" in self.existing:
            return self.existing["spm"]
        if "ct2_model" in self.existing:
            return str(Path(self.existing["ct2_model"]) / "spm.model")
        return None

    @property
    def trained(self) -> bool:
        return not self.existing

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
    def distilled(self) -> bool:
        """Whether its corpus holds data made by its teacher."""
        return any(part in DISTILLED_PARTS for part in self.parts)

    @property
    def corpus(self) -> str:
        """Its training corpus: gold (the teacher's own data), a variant of gold parts, or
        <teacher>/<variant> when a teacher made part of it."""
        if self.parts == ("gold",):
            return "gold"
        return f"{self.teacher}/{self.variant}" if self.distilled else self.variant

    @property
    def max_positions(self) -> int:
        return self.architecture.get("max_positions", DEFAULT_MAX_POSITIONS)


def resolve_loss(config: dict[str, Any], spec: str | dict[str, Any]) -> dict[str, Any]:
    """A loss entry (a name or {name, parameters}) with the `losses` defaults under it."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    return {**config["losses"].get(spec["name"], {}), **spec}


def section_resources(config: dict[str, Any], section: dict[str, Any]) -> Resources:
    defaults = config["resources"]
    own = section.get("resources", {})
    return Resources(**{key: own.get(key, defaults[key])
                        for key in ("threads", "mem_mb", "runtime")})


def teacher_entries(config: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(config key, entry) of each teacher: the `teachers` list, or the `teacher` shorthand
    (one teacher named teacher)."""
    if "teacher" in config and "teachers" in config:
        raise ConfigError("teachers", "give either `teacher` (one teacher) or `teachers`, not "
                          "both (a --configfile on top of config.yaml sets `teachers` too)")
    if "teachers" in config:
        return [(f"teachers[{i}]", entry) for i, entry in enumerate(config["teachers"])]
    return [("teacher", {"name": TEACHER, **config["teacher"]})]


def teacher_plans(config: dict[str, Any]) -> dict[str, ModelPlan]:
    teachers: dict[str, ModelPlan] = {}
    for key, entry in teacher_entries(config):
        name = entry.get("name", TEACHER)
        if name in teachers:
            raise ConfigError(f"{key}.name", f"{name!r} is used by an earlier teacher")
        training = deep_merge(config["training"], entry.get("training", {}))
        teachers[name] = ModelPlan(
            name=name, key=key, preset=entry["preset"],
            architecture=config["presets"].get(entry["preset"], {}), training=training,
            parts=("gold",), resources=section_resources(config, entry),
            processes=entry.get("processes", 1), existing=dict(entry.get("existing") or {}))
    return teachers


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


def student_plans(config: dict[str, Any], teachers: dict[str, ModelPlan]) -> dict[str,
                                                                                   ModelPlan]:
    first_teacher = next(iter(teachers))
    students = {}
    for index in range(len(config.get("students", []))):
        entry = student_entry(config, index)
        key = f"students[{index}]"
        name, data = entry["name"], entry["data"]
        if name in teachers or name in students:
            raise ConfigError(f"{key}.name", f"{name!r} is used by an earlier " + (
                "teacher" if name in teachers else "student"))
        teacher = entry.get("teacher", first_teacher)
        if teacher not in teachers:
            raise ConfigError(f"{key}.teacher", f"unknown teacher {teacher!r} (known: "
                              f"{', '.join(teachers)})")
        students[name] = ModelPlan(
            name=name, key=key, preset=entry["preset"],
            architecture=config["presets"].get(entry["preset"], {}),
            training=student_training(config, entry),
            parts=(data,) if isinstance(data, str) else tuple(data),
            resources=section_resources(config, entry),
            processes=entry.get("processes", 1), init=entry.get("init"), teacher=teacher,
            seeds=tuple(entry.get("seeds", ())))
    return students


def run_name(student: str, seed: int) -> str:
    """The model name of one seed's run: its outputs go to models/<student>/seed<seed>/."""
    return f"{student}/seed{seed}"


def seed_runs(students: dict[str, ModelPlan]) -> dict[str, ModelPlan]:
    """Each student once per seed of its `seeds:` (a student without them: one run, as is).
    A run fine-tunes the same seed's run of its `init` student, or that student's only run."""
    runs: dict[str, ModelPlan] = {}
    for student in students.values():
        if not student.seeds:
            runs[student.name] = replace(student, student=student.name,
                                         init=init_run(student, None, students))
        for seed in student.seeds:
            name = run_name(student.name, seed)
            runs[name] = replace(student, name=name, training={**student.training, "seed": seed},
                                 init=init_run(student, seed, students), student=student.name)
    return runs


def init_run(student: ModelPlan, seed: int | None, students: dict[str, ModelPlan]) -> str | None:
    if student.init is None:
        return None
    init = students[student.init]
    if not init.seeds:
        return init.name
    if seed is None or seed not in init.seeds:
        raise ConfigError(f"{student.key}.init", f"{init.name!r} has runs for seeds "
                          f"{list(init.seeds)}; {student.name!r} must list seeds among them")
    return run_name(init.name, seed)
