"""Give each job on a multi-GPU workstation GPUs of its own.

Snakemake's local executor counts GPUs (``--resources gpu=N``) but does not say which ones a
job may use, so two jobs could share a device. A job that needs k GPUs claims k free ones with
an exclusive file lock per device, sets CUDA_VISIBLE_DEVICES to them before CUDA starts, and
holds the locks until it exits. Under SLURM, CUDA_VISIBLE_DEVICES already names exactly the
allocated devices and nothing is claimed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from typing import IO

from nmtkd.errors import NmtkdError

LOCK_DIR_ENV = "NMTKD_GPU_LOCK_DIR"
log = logging.getLogger(__name__)
_held: list[IO] = []  # open lock files: the locks last as long as the process


def visible_devices() -> list[str] | None:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [d for d in value.split(",") if d.strip()]


def device_count() -> int:
    import torch

    return torch.cuda.device_count()


def claim_gpus(count: int, available: list[str] | None = None, lock_dir: Path | None = None,
               timeout: float = 24 * 3600, poll: float = 1.0) -> list[str]:
    """Claim `count` devices (waiting while all are busy) and expose only those to CUDA."""
    if count <= 0:
        return []
    visible = visible_devices()
    if available is None:
        if visible is not None and len(visible) <= count:
            return visible  # the scheduler already gave this job its own devices
        available = visible if visible is not None else [str(i) for i in range(device_count())]
    if len(available) < count:
        raise NmtkdError(f"{count} GPU(s) requested but only {len(available)} visible")
    directory = Path(lock_dir or os.environ.get(LOCK_DIR_ENV, "/tmp/nmtkd-gpu-locks"))
    directory.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        claimed: list[tuple[str, IO]] = []
        for device in available:
            handle = (directory / f"gpu{device}.lock").open("w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            claimed.append((device, handle))
            if len(claimed) == count:
                break
        if len(claimed) == count:
            _held.extend(handle for _, handle in claimed)
            devices = [device for device, _ in claimed]
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
            log.info("using GPU(s) %s", ",".join(devices))
            return devices
        for _, handle in claimed:
            handle.close()  # releases its lock
        if time.monotonic() > deadline:
            raise NmtkdError(f"no {count} free GPU(s) among {available} after {timeout:.0f} s")
        time.sleep(poll)


def release_all() -> None:
    while _held:
        _held.pop().close()
