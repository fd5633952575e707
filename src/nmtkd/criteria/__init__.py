"""Training criteria: the loss of each method, one module each, selected by name from config.
See `base` for the contract and `registry` for how a name (or a user's module) is resolved."""

from nmtkd.criteria.base import (
    KNN_TARGETS,
    NEEDS,
    TEACHER_MODEL,
    TEACHER_SIGNALS,
    Criterion,
    CriterionOutput,
    TrainingStep,
    nll_terms,
    token_nll,
)
from nmtkd.criteria.registry import build_criterion, known_criteria, register

__all__ = ["KNN_TARGETS", "NEEDS", "TEACHER_MODEL", "TEACHER_SIGNALS", "Criterion",
           "CriterionOutput", "TrainingStep", "build_criterion", "known_criteria", "nll_terms",
           "register", "token_nll"]
