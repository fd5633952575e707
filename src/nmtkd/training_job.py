"""`nmtkd train` without the command line: settings, data, the criterion with what it needs,
then the trainer. Also `nmtkd teacher-signals`, which prepares what top-k criteria read."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nmtkd.batching import ParallelData
from nmtkd.criteria import (
    KNN_TARGETS,
    TEACHER_MODEL,
    TEACHER_SIGNALS,
    Criterion,
    build_criterion,
)
from nmtkd.errors import NmtkdError
from nmtkd.model import ModelConfig
from nmtkd.safepaths import require_file
from nmtkd.spm import Tokenizer
from nmtkd.textio import read_lines, sha256_files
from nmtkd.trainer import TrainConfig, Trainer, resolve_device

log = logging.getLogger("nmtkd")


@dataclass
class TrainingFiles:
    train_src: Path
    train_tgt: Path
    valid_src: Path
    valid_tgt: Path
    valid_ref: Path
    spm: Path
    workdir: Path
    output: Path
    summary: Path
    init: Path | None = None
    teacher: Path | None = None
    teacher_signals: Path | None = None
    knn_targets: Path | None = None


def file_sha256(path: Path) -> str:
    """A model file's short checksum, part of a run's identity."""
    require_file(path)
    return sha256_files(path)[:16]


def read_settings(settings: dict[str, Any], tokenizer: Tokenizer) -> tuple[TrainConfig,
                                                                           ModelConfig]:
    try:
        train_cfg = TrainConfig(**settings.get("training", {}))
        model_cfg = ModelConfig(vocab_size=len(tokenizer), **settings.get("model", {}))
    except (TypeError, ValueError) as error:
        raise NmtkdError(f"--settings: {error}") from None
    return train_cfg, model_cfg


def read_data(files: TrainingFiles, tokenizer: Tokenizer,
              max_positions: int) -> tuple[ParallelData, ParallelData, list[str]]:
    """Training and validation pairs (without pairs longer than the model's positions) and
    the raw validation references."""
    train = ParallelData.from_piece_files(files.train_src, files.train_tgt, tokenizer,
                                          max_positions)
    valid = ParallelData.from_piece_files(files.valid_src, files.valid_tgt, tokenizer,
                                          max_positions)
    for data in (train, valid):
        if data.skipped:
            log.warning("%s: skipped %d pairs longer than max_positions=%d", data.name,
                        data.skipped, max_positions)
    refs = read_lines(files.valid_ref)
    if len(refs) != len(valid) + valid.skipped:
        raise NmtkdError(f"line counts differ: {files.valid_ref} has {len(refs)} lines, "
                         f"{files.valid_src} has {len(valid) + valid.skipped}")
    return train, valid, refs


def bound_criterion(spec: dict[str, Any], files: TrainingFiles, train: ParallelData,
                    identity: dict[str, str]) -> Criterion:
    """The criterion of `spec`, given what it needs; adds the hashes of those inputs to
    `identity` (a saved state is resumed only with the same teacher and signals)."""
    criterion = build_criterion(spec)
    teacher_model, signals = None, None
    if TEACHER_MODEL in criterion.needs:
        if files.teacher is None:
            raise NmtkdError(f"loss {criterion.name!r} runs the teacher: pass --teacher")
        from nmtkd.checkpoint import load_model

        teacher_model = load_model(files.teacher)[0]
        identity["teacher"] = file_sha256(files.teacher)
    if TEACHER_SIGNALS in criterion.needs:
        if files.teacher_signals is None:
            raise NmtkdError(f"loss {criterion.name!r} reads the teacher's top-"
                             f"{criterion.signals_k}: pass --teacher-signals (made by "
                             "nmtkd teacher-signals)")
        from nmtkd.teacher_signals import TeacherSignals, files_sha256

        signals = TeacherSignals(files.teacher_signals)
        signals.check_corpus(files_sha256(files.train_src, files.train_tgt), train)
        if signals.k < criterion.signals_k:
            raise NmtkdError(f"{files.teacher_signals}: holds the teacher's top-{signals.k}, "
                             f"the loss reads top-{criterion.signals_k}")
        identity["teacher_signals"] = signals.fingerprint
    knn_targets = None
    if KNN_TARGETS in criterion.needs:
        knn_targets = stored_knn_targets(files, train, criterion.signals_k)
        identity["knn_targets"] = knn_targets.fingerprint
    criterion.bind(teacher_model=teacher_model, teacher_signals=signals,
                   knn_targets=knn_targets)
    return criterion


def stored_knn_targets(files: TrainingFiles, train: ParallelData, k: int):
    """The kNN targets of the training corpus, checked against it (made by knn-targets)."""
    from nmtkd.teacher_signals import TeacherSignals, files_sha256

    if files.knn_targets is None:
        raise NmtkdError("loss 'knn_kd' reads each token's stored neighbours: pass "
                         "--knn-targets (made by nmtkd knn-targets)")
    targets = TeacherSignals(files.knn_targets)
    if targets.meta.get("kind") != "knn":
        raise NmtkdError(f"{files.knn_targets}: holds teacher signals, not kNN targets")
    targets.check_corpus(files_sha256(files.train_src, files.train_tgt), train)
    if targets.k < k:
        raise NmtkdError(f"{files.knn_targets}: holds {targets.k} neighbours per token, the "
                         f"loss reads {k}")
    return targets


def train_model(files: TrainingFiles, settings: dict[str, Any], threads: int = 0) -> None:
    from nmtkd.distributed import init_distributed, shutdown

    tokenizer = Tokenizer(files.spm)
    train_cfg, model_cfg = read_settings(settings, tokenizer)
    context = init_distributed(resolve_device(train_cfg.device).type)
    threads = threads or train_cfg.threads
    if threads:
        train_cfg.threads = max(1, threads // context.world)
    train, valid, refs = read_data(files, tokenizer, model_cfg.max_positions)
    init_model, identity = None, {}
    if files.init:
        from nmtkd.checkpoint import load_model

        init_model, _ = load_model(files.init)
        identity["init"] = file_sha256(files.init)
    criterion = bound_criterion(train_cfg.loss, files, train, identity)
    if context.is_main:
        from nmtkd.safepaths import mark_directory

        mark_directory(files.workdir, "train")  # its state is the trainer's to clear
    try:
        trainer = Trainer(model_cfg, train_cfg, train, valid, refs, tokenizer, files.workdir,
                          criterion=criterion, context=context, init_model=init_model,
                          identity=identity)
        trainer.fit()
        summary = trainer.write_outputs(files.output, files.summary)
    finally:
        shutdown()
    if summary:
        log.info("done: %d updates in %.0f s; final model: %s, valid BLEU %.2f",
                 summary["updates"], summary["train_seconds"], summary["final_model"],
                 summary["final_valid"]["valid_bleu"])


def model_over_corpus(model: Path, train_src: Path, train_tgt: Path, spm: Path,
                      threads: int = 0) -> tuple[Any, ParallelData, str, str]:
    """A checkpoint about to run teacher-forced over an encoded corpus (pairs longer than its
    positions skipped): the model, the corpus, and the checksums of both."""
    from nmtkd.checkpoint import load_model
    from nmtkd.teacher_signals import files_sha256

    if threads:
        torch.set_num_threads(threads)
    network, _ = load_model(model)
    tokenizer = Tokenizer(spm)
    if len(tokenizer) != network.cfg.vocab_size:
        raise NmtkdError(f"{spm}: {len(tokenizer)} pieces, but {model} has a vocabulary of "
                         f"{network.cfg.vocab_size}")
    data = ParallelData.from_piece_files(train_src, train_tgt, tokenizer,
                                         network.cfg.max_positions)
    return network, data, file_sha256(model), files_sha256(train_src, train_tgt)


def compute_teacher_signals(model: Path, train_src: Path, train_tgt: Path, spm: Path, k: int,
                            max_tokens: int, output: Path, device: str = "auto",
                            threads: int = 0) -> dict[str, Any]:
    """Write the teacher's top-k on a training corpus into the directory `output`."""
    from nmtkd.safepaths import atomic_path
    from nmtkd.teacher_signals import write_signals

    torch_device = resolve_device(device, key="--device")  # before any work
    teacher, data, teacher_hash, corpus_hash = model_over_corpus(model, train_src, train_tgt,
                                                                 spm, threads)
    meta = {"teacher": teacher_hash, "corpus": corpus_hash, "max_tokens": max_tokens}
    with atomic_path(output, directory=True, owner="teacher-signals") as tmp:
        return write_signals(teacher, data, len(data) + data.skipped, k, max_tokens, tmp,
                             torch_device, meta)
