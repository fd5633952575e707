"""Checkpoints: atomic writes, and loading with weights_only=True (no arbitrary unpickling)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nmtkd.errors import NmtkdError
from nmtkd.model import ModelConfig, Transformer
from nmtkd.safepaths import require_file
from nmtkd.textio import atomic_path


def save(obj: dict[str, Any], path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    require_file(path, "checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        raise NmtkdError(f"{path}: cannot load checkpoint ({error})") from None


def save_model(path: str | Path, model: Transformer, meta: dict[str, Any] | None = None) -> None:
    save({"config": model.cfg.to_dict(), "model": model.state_dict(), "meta": meta or {}}, path)


def load_model(path: str | Path) -> tuple[Transformer, dict[str, Any]]:
    state = load(path)
    if "config" not in state or "model" not in state:
        raise NmtkdError(f"{path}: not an nmtkd model checkpoint (no 'config'/'model' entries)")
    model = Transformer(ModelConfig(**state["config"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model, state.get("meta", {})
