"""The training loop: token batches, Adam with inverse-sqrt warm-up, validation with greedy BLEU,
early stopping, best checkpoint, checkpoint averaging, resume after a kill, and optional
multi-process data parallelism (torchrun + DistributedDataParallel)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import sacrebleu
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from nmtkd import checkpoint
from nmtkd.batching import ParallelData, token_batches
from nmtkd.criteria import Criterion, TrainingStep, build_criterion, token_nll
from nmtkd.decoding import greedy_translate_ids
from nmtkd.distributed import DistContext
from nmtkd.errors import NmtkdError
from nmtkd.model import ModelConfig, Transformer, count_parameters
from nmtkd.spm import Tokenizer
from nmtkd.textio import atomic_paths, atomic_writer

log = logging.getLogger(__name__)

POSITIVE_INTEGERS = ("max_tokens", "accumulate", "max_updates", "max_epochs", "valid_interval",
                     "valid_bleu_sentences", "save_interval", "max_length")


@dataclass
class TrainConfig:
    max_tokens: int = 4096
    accumulate: int = 1
    lr: float = 7e-4
    warmup: int = 1000
    clip_norm: float = 1.0
    max_updates: int = 10000
    max_epochs: int = 100
    max_minutes: float = 0.0  # 0: no wall-clock limit
    valid_interval: int = 500
    valid_bleu_sentences: int = 500
    patience: int = 5
    early_stopping_metric: str = "bleu"
    average_last: int = 0
    save_interval: int = 100
    seed: int = 1
    device: str = "auto"
    precision: str = "fp32"
    threads: int = 0
    max_length: int = 256
    loss: dict[str, Any] = field(default_factory=lambda: {"name": "nll", "label_smoothing": 0.1})

    def __post_init__(self) -> None:
        for name in POSITIVE_INTEGERS:
            if getattr(self, name) < 1:
                raise NmtkdError(f"training.{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise NmtkdError(f"training.lr must be positive, got {self.lr}")
        if self.early_stopping_metric not in {"bleu", "loss"}:
            raise NmtkdError("training.early_stopping_metric must be 'bleu' or 'loss'")
        if self.precision not in {"fp32", "bf16", "auto"}:
            raise NmtkdError("training.precision must be fp32, bf16 or auto")


def resolve_device(name: str, context: DistContext | None = None,
                   key: str = "training.device") -> torch.device:
    """The torch device that `key` (auto, cpu or cuda) names."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise NmtkdError(f"{key} is 'cuda' but no CUDA device is available (torch "
                         f"{torch.__version__})")
    if name not in {"cpu", "cuda"}:
        raise NmtkdError(f"{key} must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and context is not None and context.enabled:
        return torch.device("cuda", context.local_rank)
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast for `bf16`; for `auto`, only on CUDA devices with bf16 support.

    On CPU, `auto` stays fp32: bench/trainer_throughput.py measured bf16 autocast slower than
    fp32 for the student and teacher presets even on a CPU with AMX (the matrices are small
    and the casts cost more than they save). `bf16` still forces it.
    """
    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def inverse_sqrt_lr(update: int, peak: float, warmup: int) -> float:
    update = max(update, 1)
    if warmup <= 0:
        return peak
    return peak * min(update / warmup, math.sqrt(warmup / update))


@dataclass
class TrainState:
    update: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float | None = None
    best_update: int = 0
    bad_validations: int = 0
    target_tokens: int = 0
    seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    recent: list[int] = field(default_factory=list)  # updates of the kept averaging snapshots
    finished: bool = False
    stop_reason: str | None = None


class Trainer:
    def __init__(
        self, model_cfg: ModelConfig, cfg: TrainConfig, train: ParallelData,
        valid: ParallelData, valid_refs: list[str], tokenizer: Tokenizer, workdir: Path,
        criterion: Criterion | None = None, context: DistContext | None = None,
        init_model: Transformer | None = None, identity: dict[str, str] | None = None,
    ):
        """`criterion`: the training loss, bound to what it needs (default: built from
        `cfg.loss`, which then must need nothing); `init_model`: start from these weights
        (fine-tuning); `identity`: extra facts that make a run different (e.g. hashes of the
        initial model and of the teacher), so a saved state is only resumed by the same run."""
        if cfg.max_length >= model_cfg.max_positions:
            raise NmtkdError(f"training.max_length ({cfg.max_length}) must be below the model's "
                             f"max_positions ({model_cfg.max_positions})")
        self.cfg, self.train, self.valid = cfg, train, valid
        self.valid_refs, self.tokenizer = valid_refs, tokenizer
        self.workdir = Path(workdir)
        self.context = context or DistContext()
        self.device = resolve_device(cfg.device, self.context)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.dtype = autocast_dtype(cfg.precision, self.device)
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.model = Transformer(model_cfg)
        if init_model is not None:
            wanted, given = architecture(model_cfg), architecture(init_model.cfg)
            if wanted != given:
                raise NmtkdError("the initial checkpoint's architecture differs from the "
                                 f"model's: {given} vs {wanted}")
            self.model.load_state_dict(init_model.state_dict())
        self.model.to(self.device)
        if self.context.rank > 0:
            # other ranks get rank 0's weights from DDP, but their own dropout noise
            torch.manual_seed(cfg.seed + 7919 * self.context.rank)
        self.network: torch.nn.Module = self.model
        if self.context.enabled:
            self.network = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.criterion = criterion or build_criterion(cfg.loss)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.98),
                                          eps=1e-9)
        self.state = TrainState()
        self.fingerprint = self._fingerprint(model_cfg, identity or {})

    def _fingerprint(self, model_cfg: ModelConfig, identity: dict[str, str]) -> str:
        """Identifies the run: a saved state is resumed only by the same config and data."""
        cfg = asdict(self.cfg)
        for key in ("max_minutes", "device", "threads", "save_interval"):
            cfg.pop(key)
        blob = json.dumps({"model": model_cfg.to_dict(), "train": cfg, "n": len(self.train),
                           "tokens": self.train.target_token_count(), "valid": len(self.valid),
                           "valid_tokens": self.valid.target_token_count(),
                           "data": self.train.content_hash(), "world": self.context.world,
                           **({"identity": identity} if identity else {})}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # ---- persistence -------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.workdir / "state.pt"

    def _rng_state(self) -> dict[str, Any]:
        state = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def save_state(self) -> None:
        rng_states = self.context.gather(self._rng_state())  # every rank's own RNG
        criterion_states = self.context.gather(self.criterion.state_dict())  # and criterion
        if self.context.is_main:
            checkpoint.save({
                "fingerprint": self.fingerprint,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "state": asdict(self.state),
                "rng": rng_states,
                "criterion": criterion_states,
            }, self.state_path)
        self.context.barrier()

    def load_saved_state(self) -> dict[str, Any] | None:
        """The saved state of this same run (config, data, processes), or None."""
        if not self.state_path.is_file():
            return None
        saved = checkpoint.load(self.state_path)
        known = {f.name for f in fields(TrainState)}
        if saved.get("fingerprint") != self.fingerprint or not set(saved.get("state", {})) <= known:
            log.warning("%s belongs to a different config, data or version; starting afresh",
                        self.state_path)
            return None
        return saved

    def try_resume(self) -> bool:
        """Continue the saved state of this run, if any (also a finished one: see `fit`)."""
        saved = self.load_saved_state()
        if saved is None:
            return False
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.state = TrainState(**saved["state"])
        self.criterion.load_state_dict(saved.get("criterion", [{}] * self.context.world)[
            self.context.rank])
        rng = saved["rng"][self.context.rank]
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        if self.context.is_main:
            self._truncate_log(self.state.update)
        log.info("resumed from %s at update %d (epoch %d, batch %d)", self.state_path,
                 self.state.update, self.state.epoch, self.state.batch_in_epoch)
        return True

    def _truncate_log(self, update: int) -> None:
        """Drop log records written after the saved state (the resumed run redoes them) and
        any line a kill cut short."""
        path = self.workdir / "train_log.jsonl"
        if not path.is_file():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("update", 0) <= update:
                kept.append(line)
        with atomic_writer(path) as handle:
            handle.write("".join(line + "\n" for line in kept))

    def _clear_workdir(self) -> None:
        if self.context.is_main:
            for pattern in ("state.pt", "best.pt", "snapshot_*.pt", "train_log.jsonl"):
                for path in self.workdir.glob(pattern):
                    path.unlink()
            for stale in self.workdir.glob(".*.pt.*"):  # temporaries of a killed save
                shutil.rmtree(stale, ignore_errors=True)
        self.context.barrier()

    # ---- validation ----------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    @torch.no_grad()
    def validation_loss(self, model: Transformer) -> float:
        model.eval()
        nll, tokens = 0.0, 0
        for indices in token_batches(self.valid, self.cfg.max_tokens, 0, 0, shuffle=False):
            batch = self.valid.collate(indices).to(self.device)
            with self._autocast():
                logits = model(batch.source, batch.target_in)
            token_losses, _, mask = token_nll(logits, batch.target_out)
            nll += float(token_losses[mask].sum())
            tokens += int(mask.sum())
        return nll / max(tokens, 1)

    def validation_bleu(self, model: Transformer) -> float:
        count = min(self.cfg.valid_bleu_sentences, len(self.valid))
        sources = [s[:-1] for s in self.valid.sources[:count]]  # without the appended </s>
        hyps = greedy_translate_ids(model, sources, max_length=self.cfg.max_length,
                                    device=self.device)
        texts = self.tokenizer.decode_ids(hyps)
        references = [self.valid_refs[line] for line in self.valid.lines[:count]]
        return sacrebleu.corpus_bleu(texts, [references]).score

    def measure(self, model: Transformer) -> dict[str, float]:
        record = {"valid_nll": self.validation_loss(model),
                  "valid_bleu": self.validation_bleu(model)}
        record["valid_ppl"] = math.exp(min(record["valid_nll"], 50))
        return record

    def metric(self, record: dict[str, float]) -> float:
        """Higher is better."""
        if self.cfg.early_stopping_metric == "bleu":
            return record["valid_bleu"]
        return -record["valid_nll"]

    def validate(self) -> dict[str, float]:
        """Validate on rank 0; every rank then holds rank 0's updated state."""
        record: dict[str, float] = {}
        if self.context.is_main:
            record = {"update": self.state.update, **self.measure(self.model)}
            state = self.state
            if state.best_metric is None or self.metric(record) > state.best_metric:
                state.best_metric, state.best_update = self.metric(record), state.update
                state.bad_validations = 0
                checkpoint.save_model(self.workdir / "best.pt", self.model, dict(record))
            else:
                state.bad_validations += 1
            if self.cfg.average_last > 0:
                checkpoint.save_model(self.workdir / f"snapshot_{state.update}.pt", self.model)
                state.recent = (state.recent + [state.update])[-self.cfg.average_last:]
            state.history.append(record)
        self.state = self.context.broadcast(self.state)
        self.model.train()
        return self.context.broadcast(record)

    def _drop_old_snapshots(self) -> None:
        if self.context.is_main:
            keep = {f"snapshot_{u}.pt" for u in self.state.recent}
            for path in self.workdir.glob("snapshot_*.pt"):
                if path.name not in keep:
                    path.unlink()

    # ---- training ------------------------------------------------------------------------------
    def _should_stop(self) -> str | None:
        cfg, state = self.cfg, self.state
        reason = None
        if state.update >= cfg.max_updates:
            reason = "max_updates"
        elif state.epoch >= cfg.max_epochs:
            reason = "max_epochs"
        elif cfg.patience > 0 and state.bad_validations >= cfg.patience:
            reason = "early_stopping"
        elif cfg.max_minutes > 0 and state.seconds >= cfg.max_minutes * 60:
            reason = "max_minutes"
        return self.context.broadcast(reason)  # the clock may differ between ranks

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This epoch's batches; with several processes, a multiple of their number."""
        batches = token_batches(self.train, self.cfg.max_tokens, self.cfg.seed, epoch)
        world = self.context.world
        return batches[: len(batches) - len(batches) % world] if world > 1 else batches

    def _step(self, group: list[list[int]]) -> tuple[dict[str, float], int]:
        """One update over the global batch `group` (accumulate x processes batches); this
        process computes its share. Returns the global sums of the loss and the criterion's
        terms, and the global normaliser (target tokens)."""
        self.network.train()
        self.optimizer.zero_grad(set_to_none=True)
        world = self.context.world
        local = [self.train.collate(indices).to(self.device)
                 for indices in group[self.context.rank::world]]
        normaliser = round(self.context.sum(
            float(sum(self.criterion.normaliser(batch) for batch in local))))
        sums: dict[str, float] = {}
        for position, batch in enumerate(local):
            last = position == len(local) - 1
            sync = contextlib.nullcontext() if last or not self.context.enabled else (
                self.network.no_sync())
            with sync:
                out = self.criterion(TrainingStep(self.network, batch, self.state.update + 1,
                                                  self.cfg.max_updates, self._autocast))
                # DDP averages gradients over processes; scale so they sum over the global batch
                (out.loss * world / normaliser).backward()
            for name, value in {"loss": float(out.loss.detach()), **out.terms}.items():
                sums[name] = sums.get(name, 0.0) + value
        if self.cfg.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm)
        lr = inverse_sqrt_lr(self.state.update + 1, self.cfg.lr, self.cfg.warmup)
        for param_group in self.optimizer.param_groups:
            param_group["lr"] = lr
        self.optimizer.step()
        return self.context.sum_values(sums), normaliser

    def fit(self) -> TrainState:
        """Train until a stop condition; a rerun after a kill continues from the saved state.

        A finished run is not trained again: its outputs are simply rewritten. Delete the
        working directory (or change the config) to train from scratch.
        """
        if self.context.is_main:
            self.workdir.mkdir(parents=True, exist_ok=True)
        self.context.barrier()
        if not self.try_resume():
            self._clear_workdir()
        if self.state.finished:
            log.info("%s holds a finished run (%s); not training again", self.state_path,
                     self.state.stop_reason)
            return self.state
        log.info("model: %d parameters; criterion %s; device %s; autocast %s; %d process(es)",
                 count_parameters(self.model), self.criterion.name, self.device, self.dtype,
                 self.context.world)
        progress = tqdm(total=self.cfg.max_updates, initial=self.state.update, desc="train",
                        unit=" upd", mininterval=2.0, dynamic_ncols=True,
                        disable=not self.context.is_main)
        self._window = (0, time.perf_counter())  # target tokens and start of the tok/s window
        reason = self._should_stop()
        while reason is None:
            reason = self._train_epoch(progress)
        progress.close()
        return self._finish(reason)

    def _train_epoch(self, progress: tqdm) -> str | None:
        """Continue the current epoch until its end or a stop condition; the stop reason."""
        batches = self.epoch_batches(self.state.epoch)
        per_update = self.cfg.accumulate * self.context.world
        reason = None
        while self.state.batch_in_epoch < len(batches) and reason is None:
            state = self.state
            group = batches[state.batch_in_epoch:state.batch_in_epoch + per_update]
            started = time.perf_counter()
            sums, tokens = self._step(group)
            state.seconds += time.perf_counter() - started
            state.batch_in_epoch += len(group)
            state.update += 1
            state.target_tokens += tokens
            self._report_step(progress, sums, tokens)
            validated = state.update % self.cfg.valid_interval == 0
            if validated:
                self._validate_during_training(progress)
            reason = self._should_stop()
            if validated or self.state.update % self.cfg.save_interval == 0 or reason:
                self.save_state()
                self._drop_old_snapshots()  # only once the state no longer names them
        if self.state.batch_in_epoch >= len(batches):
            self.state.epoch, self.state.batch_in_epoch = self.state.epoch + 1, 0
            reason = reason or self._should_stop()
        return reason

    def _report_step(self, progress: tqdm, sums: dict[str, float], tokens: int) -> None:
        """Progress bar and training log: the loss and each term of the criterion per token."""
        state, lr = self.state, self.optimizer.param_groups[0]["lr"]
        per_token = {name: value / max(tokens, 1) for name, value in sums.items()}
        window_tokens, window_start = self._window
        window_tokens += tokens
        self._window = (window_tokens, window_start)
        if state.update % 10 == 0 or state.update == 1:
            elapsed = time.perf_counter() - window_start
            progress.set_postfix(
                loss=f"{per_token['loss']:.3f}", nll=f"{per_token['nll']:.3f}", lr=f"{lr:.2e}",
                tok_s=f"{window_tokens / max(elapsed, 1e-9):.0f}", refresh=False)
            self._window = (0, time.perf_counter())
        progress.update(1)
        self._log({"update": state.update, "epoch": state.epoch,
                   **{f"train_{name}": value for name, value in per_token.items()},
                   "tokens": tokens, "lr": lr})

    def _validate_during_training(self, progress: tqdm) -> None:
        started = time.perf_counter()
        record = self.validate()
        self.state.seconds += time.perf_counter() - started
        self._log(record)
        progress.write(f"update {self.state.update}: valid nll {record['valid_nll']:.3f} "
                       f"bleu {record['valid_bleu']:.2f}")

    def _finish(self, reason: str | None) -> TrainState:
        if not self.state.history or self.state.history[-1]["update"] != self.state.update:
            self._log(self.validate())
        log.info("training stopped: %s", reason)
        self.state.finished, self.state.stop_reason = True, reason
        self.save_state()
        self._drop_old_snapshots()
        return self.state

    def logged_steps(self) -> list[dict[str, Any]]:
        """The training log's records of updates (not of validations), in order."""
        path = self.workdir / "train_log.jsonl"
        if not path.is_file():
            return []
        records = [json.loads(line) for line in path.read_text().splitlines()]
        return [record for record in records if "train_nll" in record]

    def _log(self, record: dict[str, Any]) -> None:
        if self.context.is_main:
            with (self.workdir / "train_log.jsonl").open("a") as handle:
                handle.write(json.dumps(record) + "\n")

    def final_model(self) -> tuple[Transformer, str, dict[str, float]]:
        """The best checkpoint, or the average of the last N validation snapshots when that
        validates better; with a description and its validation record."""
        best, record = checkpoint.load_model(self.workdir / "best.pt")
        best.to(self.device)
        chosen = (best, f"best checkpoint (update {self.state.best_update})",
                  {k: record[k] for k in ("valid_nll", "valid_bleu", "valid_ppl")})
        if self.cfg.average_last > 0 and len(self.state.recent) > 1:
            averaged = average_checkpoints(
                [self.workdir / f"snapshot_{u}.pt" for u in self.state.recent]).to(self.device)
            averaged_record = self.measure(averaged)
            if self.metric(averaged_record) >= self.metric(chosen[2]):
                chosen = (averaged, f"average of updates {self.state.recent}", averaged_record)
        chosen[0].cpu()
        return chosen

    def write_outputs(self, model_path: Path, summary_path: Path) -> dict[str, Any] | None:
        """Write the final model and the JSON summary (rank 0; other ranks return None)."""
        if not self.context.is_main:
            return None
        model, description, record = self.final_model()
        state = self.state
        steps = self.logged_steps()
        terms = recent_train_terms(steps)  # the last 100 updates, per target token
        batches_per_epoch = max(1, len(self.epoch_batches(state.epoch)))
        summary = {
            "parameters": count_parameters(model),
            "updates": state.update,
            "epochs": state.epoch + state.batch_in_epoch / batches_per_epoch,
            "train_seconds": state.seconds,
            "updates_per_second": state.update / max(state.seconds, 1e-9),
            "target_tokens_per_second": state.target_tokens / max(state.seconds, 1e-9),
            "final_model": description,
            "final_valid": record,
            "train_ppl": math.exp(min(terms["nll"], 50)) if "nll" in terms else None,
            "criterion": self.criterion.name,
            "train_terms": terms,
            "train_curve": train_curve(steps),
            "best_update": state.best_update,
            "history": state.history,
            "stop_reason": state.stop_reason,
            "device": str(self.device),
            "autocast": str(self.dtype),
            "processes": self.context.world,
            "train_pairs": len(self.train),
        }
        with atomic_paths([model_path, summary_path]) as (model_tmp, summary_tmp):
            checkpoint.save_model(model_tmp, model, {"training": summary})
            summary_tmp.write_text(json.dumps(summary, indent=2), encoding="utf-8")
        return summary


def recent_train_terms(steps: list[dict[str, Any]], updates: int = 100) -> dict[str, float]:
    """The loss and each criterion term per target token over the last `updates` logged
    updates (token-weighted); exp of its `nll` is the training perplexity."""
    steps = steps[-updates:]
    tokens = sum(r["tokens"] for r in steps)
    if not tokens:
        return {}
    names = {key for r in steps for key in r if key.startswith("train_")}
    return {name.removeprefix("train_"): sum(r.get(name, 0.0) * r["tokens"] for r in steps)
            / tokens for name in sorted(names)}


def train_curve(steps: list[dict[str, Any]], every: int = 10) -> list[dict[str, float]]:
    """The logged training terms (per target token) of every `every`-th update."""
    return [{key: value for key, value in step.items()
             if key == "update" or key.startswith("train_")}
            for step in steps if step["update"] % every == 0]


def architecture(cfg: ModelConfig) -> dict[str, Any]:
    """The fields that shape the weights (everything but dropout)."""
    return {k: v for k, v in cfg.to_dict().items() if "dropout" not in k}


def average_checkpoints(paths: list[Path]) -> Transformer:
    model, _ = checkpoint.load_model(paths[0])
    total = {k: v.clone().double() for k, v in model.state_dict().items()}
    for path in paths[1:]:
        other, _ = checkpoint.load_model(path)
        for key, value in other.state_dict().items():
            total[key] += value.double()
    model.load_state_dict({k: (v / len(paths)).to(torch.float32) for k, v in total.items()})
    return model
