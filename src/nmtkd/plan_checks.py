"""The config checks the schema cannot express, each naming its key (used by `nmtkd.plan`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nmtkd.corpora import PARTS
from nmtkd.criteria import Criterion, build_criterion, known_criteria
from nmtkd.errors import NmtkdError
from nmtkd.plan_models import ConfigError, ModelPlan, teacher_entries


def known(names) -> str:
    return ", ".join(sorted(names))


def check_loss_name(key: str, name: str, module: str | None = None) -> None:
    if module is None and name not in known_criteria():
        raise ConfigError(key, f"unknown loss {name!r} (known: {known(known_criteria())})")


def built_criterion(key: str, spec: dict[str, Any]) -> Criterion:
    """Build the loss once, so that a wrong parameter fails now, naming its key, and not when
    training starts."""
    try:
        return build_criterion(spec)
    except (NmtkdError, TypeError, ValueError) as error:
        raise ConfigError(key, str(error)) from None


def check_general(config: dict[str, Any], teachers: dict[str, ModelPlan]) -> None:
    presets = config["presets"]
    for teacher in teachers.values():
        if teacher.preset not in presets:
            raise ConfigError(f"{teacher.key}.preset", f"unknown preset {teacher.preset!r} "
                              f"(known: {known(presets)})")
    loss_sections = [("training", config["training"])] + [
        (f"{key}.training", entry.get("training", {})) for key, entry in teacher_entries(config)]
    for key, settings in loss_sections:
        loss = settings.get("loss", {})
        if loss.get("name") is not None:
            check_loss_name(f"{key}.loss.name", loss["name"], loss.get("module"))
    for name in config["data"]["test"]:
        if name in ("train", "valid"):
            raise ConfigError(f"data.test.{name}", "a test set cannot be named train or valid")
    for name, preset in presets.items():
        if preset["d_model"] % preset["heads"]:
            raise ConfigError(f"presets.{name}", "d_model must be divisible by heads")
    if config["data"]["src_lang"] == config["data"]["tgt_lang"]:
        raise ConfigError("data.tgt_lang", "must differ from data.src_lang")
    for name, defaults in config.get("losses", {}).items():
        check_loss_name(f"losses.{name}", name, defaults.get("module"))


def check_teachers(config: dict[str, Any], teachers: dict[str, ModelPlan]) -> None:
    spm_owner = None
    for teacher in teachers.values():
        for job in ("evaluation", "distill"):
            if config[job]["backend"] == "torch" and teacher.ct2_only:
                raise ConfigError(f"{job}.backend", f"the torch beam search needs a torch "
                                  f"checkpoint; teacher {teacher.name!r} is a CTranslate2 model")
        check_existing_teacher(teacher)
        check_teacher_training(config, teacher)
        if config["evaluation"]["max_length"] >= teacher.max_positions:
            raise ConfigError("evaluation.max_length", f"must be below the max_positions of "
                              f"teacher {teacher.name!r} ({teacher.max_positions})")
        spm = teacher.spm_file
        if spm and spm_owner and Path(spm).read_bytes() != Path(spm_owner.spm_file).read_bytes():
            raise ConfigError(f"{teacher.key}.existing", "its SentencePiece model differs "
                              f"from that of {spm_owner.key}; the models of a run share one")
        spm_owner = spm_owner or (teacher if spm else None)


def check_existing_teacher(teacher: ModelPlan) -> None:
    key, existing = f"{teacher.key}.existing", teacher.existing
    if not existing:
        return
    if "checkpoint" in existing and "spm" not in existing:
        raise ConfigError(f"{key}.spm", "a torch checkpoint needs the SentencePiece model it "
                          "was trained with")
    for name, path in existing.items():
        if not Path(path).exists():
            raise ConfigError(f"{key}.{name}", f"{path} does not exist")
    if "ct2_model" in existing and not (Path(existing["ct2_model"]) / "spm.model").is_file():
        raise ConfigError(f"{key}.ct2_model", f"{existing['ct2_model']} has no spm.model beside "
                          "the model (export with `nmtkd export`, or copy it there)")


def check_teacher_training(config: dict[str, Any], teacher: ModelPlan) -> None:
    entry = dict(teacher_entries(config))[teacher.key]
    own = "loss" in entry.get("training", {})
    key = f"{teacher.key}.training.loss" if own else "training.loss"
    criterion = built_criterion(key, teacher.training["loss"])
    if teacher.ct2_only and criterion.needs:
        raise ConfigError(f"{key}.name", f"{teacher.loss_name!r} needs the teacher's torch "
                          "checkpoint, but teacher.existing gives only a CTranslate2 model; "
                          "add teacher.existing.checkpoint and .spm")
    if teacher.existing:
        return  # an existing teacher is not trained
    if criterion.needs:
        raise ConfigError(f"{key}.name", f"the teacher cannot train with {teacher.loss_name!r}: "
                          "that loss distils from a teacher (use nll)")
    if teacher.training["max_length"] >= teacher.max_positions:
        raise ConfigError("training.max_length", f"{teacher.training['max_length']} must be "
                          f"below the teacher preset's max_positions ({teacher.max_positions})")


def check_students(config: dict[str, Any], teachers: dict[str, ModelPlan],
                   students: dict[str, ModelPlan], planned: list[str] | None = None) -> None:
    """Every student's loss parameters, and the rest of the settings of the `planned` ones
    (e.g. the selected studies' students; the others may need what this run lacks, such as a
    teacher's torch checkpoint)."""
    for index, student in enumerate(students.values()):
        key = student.key
        entry = config["students"][index]
        loss_key = f"{key}.loss" + (".name" if isinstance(entry.get("loss"), dict) else "")
        check_loss_name(loss_key, student.loss_name, student.training["loss"].get("module"))
        criterion = built_criterion(f"{key}.loss", student.training["loss"])
        if planned is not None and student.name not in planned:
            continue
        teacher = teachers[student.teacher]
        check_student_model(config, key, student)
        if criterion.needs and teacher.max_positions < student.max_positions:
            raise ConfigError(f"{key}.loss.name", "the teacher's preset has fewer max_positions "
                              "than the student's; the teacher must read every training pair")
        if criterion.needs and teacher.ct2_only:
            raise ConfigError(loss_key, f"{student.loss_name!r} needs the teacher's torch "
                              "checkpoint, but teacher.existing gives only a CTranslate2 model")
        check_init(key, student, students)
    check_init_chains(students)
    baseline = config.get("comparison", {}).get("baseline")
    if baseline is not None and baseline not in students:
        raise ConfigError("comparison.baseline", f"{baseline!r} is not a student (known: "
                          f"{', '.join(students)})")


def check_student_model(config: dict[str, Any], key: str, student: ModelPlan) -> None:
    presets = config["presets"]
    if student.preset not in presets:
        raise ConfigError(f"{key}.preset", f"unknown preset {student.preset!r} (known: "
                          f"{known(presets)})")
    for part in student.parts:
        if part not in PARTS:
            raise ConfigError(f"{key}.data", f"unknown data variant {part!r} (known: "
                              f"{', '.join(PARTS)}, or a list of them)")
        if part == "best2" and config["distill"]["nbest"] < 2:
            raise ConfigError(f"{key}.data", "best2 needs distill.nbest >= 2")
    if student.training["max_length"] >= student.max_positions:
        raise ConfigError(f"{key}.training.max_length", f"must be below the preset's "
                          f"max_positions ({student.max_positions})")


def check_init(key: str, student: ModelPlan, students: dict[str, ModelPlan]) -> None:
    init = student.init
    if init is None:
        return
    if init == student.name:
        raise ConfigError(f"{key}.init", f"{init!r} cannot initialise from itself; name another "
                          "student to fine-tune")
    if init not in students:
        others = ", ".join(n for n in students if n != student.name)
        raise ConfigError(f"{key}.init", f"unknown init checkpoint {init!r}: it must name "
                          f"another student (known: {others})")
    if students[init].preset != student.preset:
        raise ConfigError(f"{key}.init", f"{init!r} uses another preset than "
                          f"{student.name!r}; fine-tuning needs the same architecture")


def check_init_chains(students: dict[str, ModelPlan]) -> None:
    """An init chain must end."""
    for index, (name, student) in enumerate(students.items()):
        seen, current = {name}, student.init
        while current is not None:
            if current in seen:
                raise ConfigError(f"students[{index}].init", f"the init chain of {name!r} loops "
                                  f"back to {current!r}")
            seen.add(current)
            current = students[current].init


def check_knn(config: dict[str, Any], teachers: dict[str, ModelPlan],
              runs: dict[str, ModelPlan], knn_mt: bool = False) -> None:
    """The kNN datastore's model, and the stored neighbours against each kNN-KD student's k
    (only when a planned student reads kNN targets or a selected study has kNN-MT)."""
    from nmtkd.criteria import KNN_TARGETS

    readers = [run for run in runs.values() if KNN_TARGETS in run.needs]
    if not readers and not knn_mt:
        return
    knn = config["knn"]
    name = knn.get("model") or next(iter(teachers))
    models = {**teachers, **runs}
    if name not in models:
        raise ConfigError("knn.model", f"{name!r} is not a model of this run (known: "
                          f"{known(models)}; a student must be in a selected study, and one "
                          "with seeds is named <student>/seed<k>)")
    if models[name].ct2_only:
        raise ConfigError("knn.model", f"{name!r} is given only as a CTranslate2 model; the "
                          "datastore needs its torch checkpoint")
    index, dim = knn["index"], models[name].architecture.get("d_model")
    if index["type"] == "ivfpq" and dim and dim % index["code_size"]:
        raise ConfigError("knn.index.code_size", f"{index['code_size']} does not divide the "
                          f"key dimension {dim} (d_model of {name!r})")
    for run in readers:
        if run.criterion.signals_k > knn["targets"]["k"]:
            raise ConfigError(f"{run.key}.loss", f"reads {run.criterion.signals_k} neighbours "
                              f"per token, knn.targets.k stores {knn['targets']['k']}")
        if name in runs and name == run.name:
            raise ConfigError("knn.model", f"{name!r} cannot key the datastore it learns from")
