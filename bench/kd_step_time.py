"""Training step time of each distillation criterion against the baseline's (NLL) on the
default presets, in one run, interleaved: Word-KD, Selective KD (batch and global level),
Annealing KD stage I, TIE-KD (N = 3 passes, and its ranking loss alone, N = 1) and kNN-KD
(its 64 stored neighbours per token, read from memory-mapped files). Each runs
the teacher on every batch over the full vocabulary (teacher_topk 0, "live") and, where the
method allows, reads the teacher's top-k logits computed once by the teacher-signals job from
its memory-mapped files (top-8). The signals job's one-off cost is reported and added to a
whole Word-KD student run (the real corpus, all Multi30k training pairs, and the config's
update count). The kNN-KD paper reports Word-KD at 0.88x and Selective KD at 0.85x the
baseline's updates/s and kNN-KD at 1.06x; a secondary summary of the TIE-KD paper says its
cost grows about N-fold.

    python bench/kd_step_time.py [--updates 20] [--rounds 3] [--threads 1] [--only LABEL ...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml
from common import REPO, multi30k_lines

from nmtkd.batching import ParallelData
from nmtkd.criteria import build_criterion
from nmtkd.criteria.nll import LabelSmoothedNLL
from nmtkd.model import ModelConfig, Transformer
from nmtkd.spm import Tokenizer, train_spm
from nmtkd.teacher_signals import TeacherSignals, write_signals
from nmtkd.textio import write_lines
from nmtkd.trainer import TrainConfig, Trainer


def make_trainer(cfg: ModelConfig, data: ParallelData, criterion, workdir: Path,
                 max_tokens: int, threads: int) -> Trainer:
    settings = TrainConfig(max_tokens=max_tokens, threads=threads, device="cpu")
    return Trainer(cfg, settings, data, data, [], None, workdir, criterion=criterion)


def bound(spec: dict, teacher=None, signals=None, knn_targets=None):
    """The criterion of a config entry, given the live teacher, the signals or the kNN
    targets it needs."""
    criterion = build_criterion(spec)
    live = spec.get("teacher_topk", 0) == 0
    criterion.bind(teacher_model=teacher if live else None,
                   teacher_signals=None if live else signals, knn_targets=knn_targets)
    return criterion


def stored_knn_targets(teacher: Transformer, data: ParallelData, config: dict, max_tokens: int,
                       directory: Path) -> tuple[TeacherSignals, float]:
    """kNN-KD's targets as the workflow makes them (the teacher's datastore, the config's
    index, 64 neighbours per token), and the seconds the three jobs took."""
    from nmtkd.knn.datastore import Datastore, write_datastore
    from nmtkd.knn.index import Index, IndexSettings, write_index
    from nmtkd.knn.targets import write_targets

    knn = config["knn"]
    started = time.perf_counter()
    write_datastore(teacher, data, len(data), knn["state"], max_tokens, directory / "store",
                    torch.device("cpu"), {"model": "random", "corpus": "bench"})
    store = Datastore(directory / "store")
    write_index(store.keys, IndexSettings(**knn["index"]), directory / "index",
                {"datastore": "random"})
    write_targets(store, Index(directory / "index"), knn["targets"]["k"],
                  knn["targets"]["keep_self"], directory / "targets", {})
    return TeacherSignals(directory / "targets"), time.perf_counter() - started


def time_updates(trainer: Trainer, groups: list[list[list[int]]]) -> float:
    start = time.perf_counter()
    for group in groups:
        trainer._step(group)
    return (time.perf_counter() - start) / len(groups)


def criterion_entries(losses: dict) -> dict[str, dict]:
    """The measured criteria by label: config entries with the config's loss defaults."""
    return {
        "word_kd live": {**losses["word_kd"], "name": "word_kd", "teacher_topk": 0},
        "word_kd top-8": {**losses["word_kd"], "name": "word_kd", "teacher_topk": 8},
        "selective batch top-8": {**losses["selective_kd"], "name": "selective_kd",
                                  "strategy": "batch"},
        "selective global top-8": {**losses["selective_kd"], "name": "selective_kd",
                                   "strategy": "global"},
        "selective batch live": {**losses["selective_kd"], "name": "selective_kd",
                                 "teacher_topk": 0},
        "annealing live": {**losses["annealing_kd"], "name": "annealing_kd", "teacher_topk": 0},
        "tie_kd live, N=3": {**losses["tie_kd"], "name": "tie_kd"},
        "tie_kd ranking, N=1": {**losses["tie_kd"], "name": "tie_kd", "iterations": 1},
        "knn_kd stored k=64": {**losses["knn_kd"], "name": "knn_kd"},
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=20, help="timed updates per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--threads", type=int, default=1, help="1: as the default students")
    parser.add_argument("--max-tokens", type=int, default=2500)
    parser.add_argument("--sentences", type=int, default=0,
                        help="training pairs (default 0: the whole Multi30k training set)")
    parser.add_argument("--student-updates", type=int, default=0,
                        help="updates of a student's whole run (default: the config's "
                        "student_defaults.training.max_updates)")
    parser.add_argument("--only", nargs="+", metavar="LABEL",
                        help="measure only these criteria (labels as printed, e.g. 'tie_kd "
                        "live, N=3'), against the baseline")
    return parser.parse_args()


def timed_rounds(trainers: dict[str, Trainer], updates: int, rounds: int) -> dict[str, list]:
    """Seconds per update of every trainer: a warm-up of 3 updates each, then `rounds`
    rounds, interleaved so that every trainer sees the same noise."""
    batches = next(iter(trainers.values())).epoch_batches(0)
    groups = [[batch] for batch in batches]
    for trainer in trainers.values():
        time_updates(trainer, groups[:3])
    times: dict[str, list[float]] = {name: [] for name in trainers}
    for round_ in range(rounds):
        window = groups[3 + round_ * updates: 3 + (round_ + 1) * updates]
        for name, trainer in trainers.items():
            times[name].append(time_updates(trainer, window))
    return times


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    run_updates = args.student_updates or config["student_defaults"]["training"]["max_updates"]
    entries = criterion_entries(config["losses"])
    unknown = set(args.only or []) - set(entries)
    if unknown:
        raise SystemExit(f"--only: unknown {sorted(unknown)} (known: {', '.join(entries)})")
    entries = {name: entry for name, entry in entries.items()
               if not args.only or name in args.only}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = multi30k_lines("train", "en", args.sentences or None)
        tgt = multi30k_lines("train", "de", args.sentences or None)
        write_lines(tmp / "all.txt", src + tgt)
        train_spm([tmp / "all.txt"], tmp / "spm.model", config["sentencepiece"]["vocab_size"])
        tokenizer = Tokenizer(tmp / "spm.model")
        data = ParallelData(tokenizer.encode_ids(src), tokenizer.encode_ids(tgt))
        vocab = len(tokenizer)
        student_cfg = ModelConfig(vocab_size=vocab, **config["presets"]["student"])
        teacher_cfg = ModelConfig(vocab_size=vocab, **config["presets"]["teacher"])
        torch.manual_seed(0)
        teacher = Transformer(teacher_cfg).eval()
        prepare_seconds, signals = None, None
        if any(entry.get("teacher_topk", 0) for entry in entries.values()):
            # the teacher-signals job of the workflow, with the teacher's threads
            signals_threads = config["teachers"][0]["resources"]["threads"]
            torch.set_num_threads(signals_threads)
            started = time.perf_counter()
            write_signals(teacher, data, len(data), 8, args.max_tokens, tmp / "signals",
                          torch.device("cpu"), {"teacher": "random", "corpus": "bench"})
            prepare_seconds = time.perf_counter() - started
            torch.set_num_threads(args.threads)
            signals = TeacherSignals(tmp / "signals")
        knn_targets = None
        if any(entry["name"] == "knn_kd" for entry in entries.values()):
            knn_threads = config["knn"].get("threads", 2)
            torch.set_num_threads(knn_threads)
            knn_targets, knn_seconds = stored_knn_targets(teacher, data, config,
                                                          args.max_tokens, tmp / "knn")
            print(f"kNN-KD targets (datastore, {config['knn']['index']['type']} index, search "
                  f"of {knn_targets.meta['positions']} tokens, {knn_threads} threads): "
                  f"{knn_seconds:.1f} s, once per corpus")
            torch.set_num_threads(args.threads)
        criteria = {"baseline (nll)": LabelSmoothedNLL(0.1)}
        criteria.update({name: bound(entry, teacher, signals, knn_targets)
                         for name, entry in entries.items()})
        trainers = {name: make_trainer(student_cfg, data, criterion,
                                       tmp / name.replace(" ", "_").replace(",", ""),
                                       args.max_tokens, args.threads)
                    for name, criterion in criteria.items()}
        times = timed_rounds(trainers, args.updates, args.rounds)
    print(f"{len(data)} Multi30k pairs, vocabulary {vocab}, {args.threads} thread(s), "
          f"max_tokens {args.max_tokens}, median of {args.rounds} rounds x {args.updates} "
          "updates")
    report(times, prepare_seconds, len(data), run_updates,
           config["teachers"][0]["resources"]["threads"])


def report(times: dict[str, list[float]], prepare_seconds: float | None, pairs: int,
           run_updates: int, signals_threads: int) -> None:
    base = statistics.median(times["baseline (nll)"])
    print(f"{'loss':24} {'s/update':>9} {'updates/s':>10} {'x baseline':>11}")
    for name, values in times.items():
        seconds = statistics.median(values)
        print(f"{name:24} {seconds:9.3f} {1 / seconds:10.2f} {base / seconds:11.2f}")
    if prepare_seconds is None or "word_kd top-8" not in times:
        return
    top8 = statistics.median(times["word_kd top-8"])
    per_sentence = prepare_seconds / pairs
    # a whole run: the updates at the measured step times, plus the one-off teacher pass
    whole_baseline, whole_top8 = run_updates * base, run_updates * top8 + prepare_seconds
    print(f"top-8 teacher pass (the teacher_signals job, {signals_threads} threads): "
          f"{prepare_seconds:.1f} s for {pairs} pairs ({per_sentence * 1e3:.2f} ms/pair)")
    print(f"whole run of {run_updates} updates on these {pairs} pairs: baseline "
          f"{whole_baseline / 60:.1f} min, word_kd top-8 {whole_top8 / 60:.1f} min including the "
          f"teacher pass = {whole_baseline / whole_top8:.2f}x the baseline's updates/s "
          "(composed from the measured step times and the measured pass)")


if __name__ == "__main__":
    main()
