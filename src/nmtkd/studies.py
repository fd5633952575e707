"""Studies: named sets of student rows, each with its own tables, plots and baseline.

Students are defined once (`students:`); a study lists the ones it compares
(`studies: {<name>: {students: [...], baseline: ..., paper: {...}}}`). Studies share the
experiment's teacher, SentencePiece model, distilled data and teacher signals, and a student in
two studies is trained once. `study:` picks which studies a run builds (a name, a list, or
`name,name`; on the command line `--config study=word_level`); without it, every study. A config
without `studies:` has one study, `comparison`, of every student.

A selected study brings its students, and the students they are fine-tuned from, into the
plan; students of unselected studies are checked but not trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nmtkd.plan_models import ConfigError, ModelPlan

IMPLICIT = "comparison"


@dataclass(frozen=True)
class Study:
    name: str
    students: tuple[str, ...]  # student names (not runs), in table order
    baseline: str | None  # the student the Δ columns and significance tests compare against
    paper: dict[str, Any] | None  # reported numbers printed beside the tables, for orientation
    knn_mt: bool = False  # a kNN-MT row (knn.model decoding with its datastore)


def default_baseline(students: list[str], plans: dict[str, ModelPlan]) -> str | None:
    """The first of `students` trained from scratch on gold data with the plain NLL."""
    for name in students:
        student = plans[name]
        if student.parts == ("gold",) and student.init is None and student.loss_name == "nll":
            return name
    return None


def configured_studies(config: dict[str, Any], plans: dict[str, ModelPlan]) -> dict[str, Study]:
    """Every study of the config, checked (students known, baseline among them)."""
    fallback = config.get("comparison", {}).get("baseline")
    if not config.get("studies"):
        return {IMPLICIT: Study(IMPLICIT, tuple(plans),
                                fallback or default_baseline(list(plans), plans), None)}
    studies = {}
    for name, entry in config["studies"].items():
        key = f"studies.{name}"
        for index, student in enumerate(entry["students"]):
            if student not in plans:
                raise ConfigError(f"{key}.students[{index}]", f"unknown student {student!r} "
                                  f"(known: {', '.join(plans)})")
        baseline = entry.get("baseline")
        if baseline is not None and baseline not in entry["students"]:
            raise ConfigError(f"{key}.baseline", f"{baseline!r} is not among the study's "
                              "students")
        if baseline is None:
            baseline = fallback if fallback in entry["students"] else default_baseline(
                entry["students"], plans)
        studies[name] = Study(name, tuple(dict.fromkeys(entry["students"])), baseline,
                              entry.get("paper"), bool(entry.get("knn_mt", False)))
    check_every_student_studied(studies, plans)
    return studies


def check_every_student_studied(studies: dict[str, Study], plans: dict[str, ModelPlan]) -> None:
    """A student no study lists would never be trained: say so instead of ignoring it."""
    studied = {name for study in studies.values() for name in study.students}
    inits = {plan.init for plan in plans.values() if plan.init}
    for name, plan in plans.items():
        if name not in studied and name not in inits:
            raise ConfigError(plan.key, f"{name!r} is in no study: add it to the students of "
                              f"one of studies.{', studies.'.join(studies)}")


def selected_names(config: dict[str, Any], studies: dict[str, Study]) -> list[str]:
    """The studies `study:` names (all when absent), in the order given."""
    chosen = config.get("study")
    if chosen is None or chosen == "all":
        return list(studies)
    names = chosen.split(",") if isinstance(chosen, str) else list(chosen)
    names = [name.strip() for name in names if name.strip()]
    for name in names:
        if name not in studies:
            raise ConfigError("study", f"unknown study {name!r} (known: {', '.join(studies)})")
    if not names:
        raise ConfigError("study", "names no study")
    return list(dict.fromkeys(names))


def needed_students(studies: list[Study], plans: dict[str, ModelPlan]) -> list[str]:
    """The students the studies compare and those they are fine-tuned from, in config order."""
    needed: set[str] = set()
    for study in studies:
        for name in study.students:
            while name in plans and name not in needed:  # an unknown init: checked later
                needed.add(name)
                name = plans[name].init
    return [name for name in plans if name in needed]
