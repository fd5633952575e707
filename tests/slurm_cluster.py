"""A one-node SLURM cluster on localhost for the tests: munged, slurmctld and slurmd started
with a minimal config (no accounting), stopped by PID afterwards.

Needs root and Debian's `slurm-wlm` and `munge` packages (`.ci/run` installs them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

SLURM_CONF = Path("/etc/slurm/slurm.conf")  # where srun finds it inside jobs, too
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue")


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "starting SLURM daemons needs root"
    missing = [name for name in BINARIES if not shutil.which(name)
               and not Path(f"/usr/sbin/{name}").exists()]
    if missing:
        return f"SLURM/munge binaries not installed: {', '.join(missing)}"
    return None


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def _config(state: Path, host: str, cpus: int, memory_mb: int) -> str:
    return f"""ClusterName=nmtkdtest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmdSpoolDir={state}/slurmd
StateSaveLocation={state}/ctld
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
KillWait=5
Waittime=0
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _wait(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


def _node_idle() -> bool:
    result = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    return result.returncode == 0 and result.stdout.strip() in {"idle", "mix"}


@contextlib.contextmanager
def local_slurm(state: Path, cpus: int = 2, memory_mb: int = 8000) -> Iterator[Path]:
    """Start the daemons, yield the state directory (with the daemons' logs), stop them."""
    state.mkdir(parents=True, exist_ok=True)
    for sub in ("slurmd", "ctld", "munge"):
        (state / sub).mkdir(exist_ok=True)
    host = socket.gethostname().split(".")[0]
    backup = None
    if SLURM_CONF.exists():
        backup = SLURM_CONF.read_bytes()
    SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SLURM_CONF.write_text(_config(state, host, cpus, memory_mb))
    pids: list[int] = []
    munge_socket = state / "munge" / "munge.socket"
    env = dict(os.environ)
    env.pop("SLURM_CONF", None)
    try:
        munged = subprocess.Popen(
            [_binary("munged"), "--foreground", "--force", f"--socket={munge_socket}",
             f"--pid-file={state / 'munge' / 'munged.pid'}",
             f"--log-file={state / 'munge' / 'munged.log'}",
             f"--seed-file={state / 'munge' / 'seed'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pids.append(munged.pid)
        _wait(munge_socket.exists, 20, "munged")
        # slurm's munge plugin reads the socket path from its config, the default otherwise
        SLURM_CONF.write_text(SLURM_CONF.read_text().replace(
            "AuthType=auth/munge", f"AuthType=auth/munge\nAuthInfo=socket={munge_socket}"))
        ctld = subprocess.Popen([_binary("slurmctld"), "-D", "-i"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pids.append(ctld.pid)
        slurmd = subprocess.Popen([_binary("slurmd"), "-D", "-N", host], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pids.append(slurmd.pid)
        _wait(_node_idle, 60, "the SLURM node to become idle")
        yield state
    finally:
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in reversed(pids):
            with contextlib.suppress(ChildProcessError):
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                    if done:
                        break
                    time.sleep(0.2)
                else:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
        if backup is None:
            SLURM_CONF.unlink(missing_ok=True)
        else:
            SLURM_CONF.write_bytes(backup)
