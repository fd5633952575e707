"""The training loop: token batches, Adam with inverse-sqrt warm-up, validation with greedy BLEU,
early stopping, best checkpoint, checkpoint averaging, and resume after a kill."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sacrebleu
import torch
from tqdm import tqdm

from nmtkd import checkpoint
from nmtkd.batching import ParallelData, token_batches
from nmtkd.decoding import greedy_translate_ids
from nmtkd.errors import NmtkdError
from nmtkd.losses import TrainingLoss, build_loss
from nmtkd.model import ModelConfig, Transformer, count_parameters
from nmtkd.spm import Tokenizer
from nmtkd.textio import atomic_writer

log = logging.getLogger(__name__)


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
        if self.early_stopping_metric not in {"bleu", "loss"}:
            raise NmtkdError("training.early_stopping_metric must be 'bleu' or 'loss'")
        if self.precision not in {"fp32", "bf16", "auto"}:
            raise NmtkdError("training.precision must be fp32, bf16 or auto")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise NmtkdError("training.device is 'cuda' but no CUDA device is available")
    if name not in {"cpu", "cuda"}:
        raise NmtkdError(f"training.device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def supports_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # On CPU, bf16 autocast only pays off with native bf16 matrix units (AMX / AVX512-BF16).
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp32":
        return None
    if precision == "bf16" or (precision == "auto" and supports_bf16(device)):
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


class Trainer:
    def __init__(
        self, model_cfg: ModelConfig, cfg: TrainConfig, train: ParallelData,
        valid: ParallelData, valid_refs: list[str], tokenizer: Tokenizer, workdir: Path,
        loss: TrainingLoss | None = None,
    ):
        self.cfg, self.train, self.valid = cfg, train, valid
        self.valid_refs, self.tokenizer = valid_refs, tokenizer
        self.workdir = Path(workdir)
        self.device = resolve_device(cfg.device)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.dtype = autocast_dtype(cfg.precision, self.device)
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.model = Transformer(model_cfg).to(self.device)
        self.loss = loss or build_loss(cfg.loss)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(0.9, 0.98),
                                          eps=1e-9)
        self.state = TrainState()
        self.fingerprint = self._fingerprint(model_cfg)

    def _fingerprint(self, model_cfg: ModelConfig) -> str:
        """Identifies the run: a saved state is resumed only by the same config and data."""
        cfg = asdict(self.cfg)
        for key in ("max_minutes", "device", "threads", "save_interval"):
            cfg.pop(key)
        blob = json.dumps({"model": model_cfg.to_dict(), "train": cfg, "n": len(self.train),
                           "tokens": self.train.target_token_count()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # ---- persistence -------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.workdir / "state.pt"

    def save_state(self) -> None:
        checkpoint.save({
            "fingerprint": self.fingerprint,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "state": asdict(self.state),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
        }, self.state_path)

    def try_resume(self) -> bool:
        if not self.state_path.is_file():
            return False
        saved = checkpoint.load(self.state_path)
        if saved.get("fingerprint") != self.fingerprint:
            log.warning("%s belongs to a different config or data; starting afresh",
                        self.state_path)
            return False
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.state = TrainState(**saved["state"])
        torch.set_rng_state(saved["torch_rng"])
        random.setstate(saved["python_rng"])
        log.info("resumed from %s at update %d (epoch %d, batch %d)", self.state_path,
                 self.state.update, self.state.epoch, self.state.batch_in_epoch)
        return True

    # ---- validation ----------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    @torch.no_grad()
    def validation_loss(self) -> float:
        self.model.eval()
        nll, tokens = 0.0, 0
        for indices in token_batches(self.valid, self.cfg.max_tokens, 0, 0, shuffle=False):
            batch = self.valid.collate(indices).to(self.device)
            with self._autocast():
                logits = self.model(batch.source, batch.target_in)
            out = self.loss_nll(logits, batch)
            nll += out[0]
            tokens += out[1]
        return nll / max(tokens, 1)

    @staticmethod
    def loss_nll(logits: torch.Tensor, batch: Any) -> tuple[float, int]:
        from nmtkd.losses import token_nll

        nll, _, mask = token_nll(logits, batch.target_out)
        return float(nll[mask].sum()), int(mask.sum())

    def validation_bleu(self) -> float:
        count = min(self.cfg.valid_bleu_sentences, len(self.valid))
        sources = [s[:-1] for s in self.valid.sources[:count]]  # drop the </s> collate added
        hyps = greedy_translate_ids(self.model, sources, max_length=self.cfg.max_length,
                                    device=self.device)
        texts = self.tokenizer.decode_ids(hyps)
        return sacrebleu.corpus_bleu(texts, [self.valid_refs[:count]]).score

    def validate(self) -> dict[str, float]:
        record = {"update": self.state.update, "valid_nll": self.validation_loss(),
                  "valid_bleu": self.validation_bleu()}
        record["valid_ppl"] = math.exp(min(record["valid_nll"], 50))
        metric = record["valid_bleu"] if self.cfg.early_stopping_metric == "bleu" else -record[
            "valid_nll"]
        if self.state.best_metric is None or metric > self.state.best_metric:
            self.state.best_metric, self.state.best_update = metric, self.state.update
            self.state.bad_validations = 0
            checkpoint.save_model(self.workdir / "best.pt", self.model,
                                  {"update": self.state.update, **record})
        else:
            self.state.bad_validations += 1
        if self.cfg.average_last > 0:
            checkpoint.save_model(self.workdir / f"snapshot_{self.state.update}.pt", self.model)
            self.state.recent.append(self.state.update)
            for old in self.state.recent[: -self.cfg.average_last]:
                (self.workdir / f"snapshot_{old}.pt").unlink(missing_ok=True)
            self.state.recent = self.state.recent[-self.cfg.average_last:]
        self.state.history.append(record)
        self.model.train()
        return record

    # ---- training ------------------------------------------------------------------------------
    def _should_stop(self) -> str | None:
        cfg, state = self.cfg, self.state
        if state.update >= cfg.max_updates:
            return "max_updates"
        if state.epoch >= cfg.max_epochs:
            return "max_epochs"
        if cfg.patience > 0 and state.bad_validations >= cfg.patience:
            return "early_stopping"
        if cfg.max_minutes > 0 and state.seconds >= cfg.max_minutes * 60:
            return "max_minutes"
        return None

    def _step(self, batches: list[list[int]]) -> tuple[float, int]:
        """One update over `accumulate` batches; returns (summed NLL, target tokens)."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        collated = [self.train.collate(b).to(self.device) for b in batches]
        total_tokens = sum(b.target_tokens for b in collated)
        nll_sum = 0.0
        for batch in collated:
            with self._autocast():
                logits = self.model(batch.source, batch.target_in)
            out = self.loss(logits, batch)
            (out.loss / total_tokens).backward()
            nll_sum += float(out.nll)
        if self.cfg.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm)
        lr = inverse_sqrt_lr(self.state.update + 1, self.cfg.lr, self.cfg.warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        return nll_sum, total_tokens

    def fit(self) -> TrainState:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.try_resume()
        cfg, state = self.cfg, self.state
        log.info("model: %d parameters; device %s; autocast %s", count_parameters(self.model),
                 self.device, self.dtype)
        progress = tqdm(total=cfg.max_updates, initial=state.update, desc="train",
                        unit=" upd", mininterval=2.0, dynamic_ncols=True)
        reason = self._should_stop()
        window_tokens, window_start = 0, time.perf_counter()
        while reason is None:
            batches = token_batches(self.train, cfg.max_tokens, cfg.seed, state.epoch)
            while state.batch_in_epoch < len(batches) and reason is None:
                group = batches[state.batch_in_epoch:state.batch_in_epoch + cfg.accumulate]
                started = time.perf_counter()
                nll_sum, tokens = self._step(group)
                state.seconds += time.perf_counter() - started
                state.batch_in_epoch += len(group)
                state.update += 1
                state.target_tokens += tokens
                window_tokens += tokens
                if state.update % 10 == 0 or state.update == 1:
                    elapsed = time.perf_counter() - window_start
                    progress.set_postfix(
                        loss=f"{nll_sum / max(tokens, 1):.3f}",
                        lr=f"{self.optimizer.param_groups[0]['lr']:.2e}",
                        tok_s=f"{window_tokens / max(elapsed, 1e-9):.0f}", refresh=False)
                    window_tokens, window_start = 0, time.perf_counter()
                progress.update(1)
                self._log({"update": state.update, "epoch": state.epoch,
                           "train_nll": nll_sum / max(tokens, 1), "tokens": tokens,
                           "lr": self.optimizer.param_groups[0]["lr"]})
                if state.update % cfg.valid_interval == 0:
                    started = time.perf_counter()
                    record = self.validate()
                    state.seconds += time.perf_counter() - started
                    self._log(record)
                    progress.write(f"update {state.update}: valid nll {record['valid_nll']:.3f} "
                                   f"bleu {record['valid_bleu']:.2f}")
                reason = self._should_stop()
                if state.update % cfg.save_interval == 0 or reason:
                    self.save_state()
            if state.batch_in_epoch >= len(batches):
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                reason = reason or self._should_stop()
        progress.close()
        if not state.history or state.history[-1]["update"] != state.update:
            self._log(self.validate())
            self.save_state()
        log.info("training stopped: %s", reason)
        state.finished = True
        self.stop_reason = reason
        return state

    def _log(self, record: dict[str, Any]) -> None:
        with (self.workdir / "train_log.jsonl").open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def final_model(self) -> Transformer:
        """The best checkpoint, or the average of the last N validation snapshots."""
        if self.cfg.average_last > 0 and self.state.recent:
            paths = [self.workdir / f"snapshot_{u}.pt" for u in self.state.recent]
            return average_checkpoints(paths)
        model, _ = checkpoint.load_model(self.workdir / "best.pt")
        return model

    def write_outputs(self, model_path: Path, summary_path: Path) -> dict[str, Any]:
        model = self.final_model()
        state = self.state
        summary = {
            "parameters": count_parameters(model),
            "updates": state.update,
            "epochs": state.epoch + state.batch_in_epoch / max(1, len(token_batches(
                self.train, self.cfg.max_tokens, self.cfg.seed, state.epoch))),
            "train_seconds": state.seconds,
            "updates_per_second": state.update / max(state.seconds, 1e-9),
            "target_tokens_per_second": state.target_tokens / max(state.seconds, 1e-9),
            "best_update": state.best_update,
            "best_valid": next((h for h in state.history if h["update"] == state.best_update), {}),
            "final_valid": state.history[-1] if state.history else {},
            "averaged": state.recent if self.cfg.average_last > 0 else [],
            "stop_reason": getattr(self, "stop_reason", None),
            "device": str(self.device),
            "autocast": str(self.dtype),
            "train_pairs": len(self.train),
        }
        checkpoint.save_model(model_path, model, {"training": summary})
        with atomic_writer(summary_path) as handle:
            json.dump(summary, handle, indent=2)
        return summary


def average_checkpoints(paths: list[Path]) -> Transformer:
    model, _ = checkpoint.load_model(paths[0])
    total = {k: v.clone().double() for k, v in model.state_dict().items()}
    for path in paths[1:]:
        other, _ = checkpoint.load_model(path)
        for key, value in other.state_dict().items():
            total[key] += value.double()
    model.load_state_dict({k: (v / len(paths)).to(torch.float32) for k, v in total.items()})
    return model
