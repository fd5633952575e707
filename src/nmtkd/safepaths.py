"""Safe outputs: a command replaces only what it wrote itself, and all its files at once.

Rules every command follows (see the README's "Safety" section):
  * a file output replaces only a file (or a symlink); an existing directory is refused;
  * a directory output replaces only an empty directory or one that this same command wrote
    before (it carries a marker file naming the command); anything else is refused;
  * outputs are checked up front, before any work: distinct from each other and from every
    input (resolved paths), no input inside an output directory, no output inside an input
    directory, and the folder writable;
  * a command's outputs appear together or not at all (rolled back if one fails to move);
  * temporaries left beside an output by a killed run are removed by the next run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from nmtkd.errors import NmtkdError

MARKER = ".nmtkd-output"  # inside every directory a command writes; holds the command's name
TMP_TAG = "nmtkd-tmp"


def _marker_owner(directory: Path) -> str | None:
    marker = directory / MARKER
    if not marker.is_file():
        return None
    return marker.read_text(encoding="utf-8", errors="replace").strip()


def check_output_kind(target: Path, directory: bool = False, owner: str | None = None,
                      legacy: Callable[[Path], bool] | None = None) -> None:
    """Refuse to replace anything but the same kind of output written by the same command.

    `legacy` recognises a directory that this command wrote before markers existed."""
    target = Path(target)
    if not directory:
        if target.is_dir() and not target.is_symlink():
            raise NmtkdError(f"{target}: is a directory; refusing to replace it with a file")
        if target.exists() and not (target.is_file() or target.is_symlink()):
            raise NmtkdError(f"{target}: not a regular file; refusing to replace it")
        return
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise NmtkdError(f"{target}: exists and is not a directory; refusing to replace it")
    if not target.is_dir() or not any(target.iterdir()):
        return
    found = _marker_owner(target)
    if found == owner or (found is None and legacy is not None and legacy(target)):
        return
    writer = f"written by 'nmtkd {found}'" if found else "not written by nmtkd"
    raise NmtkdError(f"{target}: existing directory {writer}; refusing to replace it "
                     f"(only an earlier output of 'nmtkd {owner}' is replaced)")


def not_a_file(path: str | Path, what: str = "file") -> str:
    """Why `path` cannot be read as a regular file, as a one-line message naming it: missing,
    a broken or looping symbolic link, a directory, a pipe, a device or a socket."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            return f"{path}: a loop of symbolic links; point it at a {what}"
        if os.path.islink(path):
            return f"{path}: a symbolic link to {os.readlink(path)}, which does not exist"
        return f"{path}: {what} not found"
    kinds = [(stat.S_ISDIR, f"is a directory, not a {what}"),
             (stat.S_ISFIFO, "is a pipe (FIFO or process substitution), not a regular file; "
              "inputs may be read more than once: write it to a file first"),
             (stat.S_ISCHR, f"is a character device, not a {what}"),
             (stat.S_ISBLK, f"is a block device, not a {what}"),
             (stat.S_ISSOCK, f"is a socket, not a {what}")]
    for test, description in kinds:
        if test(mode):
            return f"{path}: {description}"
    return f"{path}: {what} not found" if not stat.S_ISREG(mode) else ""


def require_file(path: str | Path, what: str = "file") -> None:
    """Refuse anything but an existing regular file (through symbolic links), in one line."""
    problem = not_a_file(path, what)
    if problem:
        raise NmtkdError(problem)


def check_input(path: str | Path) -> None:
    """An input path given on the command line: a regular file or a directory (a model or
    datastore folder), not missing, a broken link, a pipe or a device."""
    if not Path(path).is_dir():
        require_file(path)


def check_writable_parent(target: Path) -> None:
    """Prove that the output's folder can be written (or created), so that a bad path fails
    before any work rather than after it. Nothing is left behind: the nearest existing folder
    is probed with a temporary folder that is removed at once."""
    target = Path(target).absolute()
    ancestor = next(a for a in target.parents if os.path.lexists(a))
    if not ancestor.is_dir():
        raise NmtkdError(f"{target}: cannot create it: {ancestor} is not a directory")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f".{TMP_TAG}-probe-", dir=ancestor))
    except OSError as error:
        raise NmtkdError(f"{target}: cannot write into {ancestor} "
                         f"({error.strerror or error})") from None


TEMPORARY_IN_MESSAGE = re.compile(r"\.([^/\s]+)\." + re.escape(TMP_TAG) + r"\.[^/\s]+/\1")


def display_paths(message: str) -> str:
    """A message with each temporary output path replaced by the output it stands for."""
    return TEMPORARY_IN_MESSAGE.sub(r"\1", message)


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def check_distinct(outputs: Mapping[str, Path], inputs: Mapping[str, Path],
                   directories: Sequence[str] = ()) -> None:
    """Outputs must differ from each other and from the inputs (as resolved paths); no input
    may lie inside a directory output, which is replaced whole, and no output inside an input
    directory (a model, datastore, index or signals folder)."""
    seen: dict[Path, str] = {}
    for name, path in outputs.items():
        real = _resolved(path)
        if real in seen:
            raise NmtkdError(f"{seen[real]} and {name} name the same file ({path})")
        seen[real] = name
    for in_name, in_path in inputs.items():
        real_input = _resolved(in_path)
        for out_name, out_path in outputs.items():
            real_output = _resolved(out_path)
            if real_input == real_output:
                raise NmtkdError(f"{out_name} and {in_name} name the same file ({in_path}); "
                                 "an output may not overwrite an input")
            if out_name in directories and real_output in real_input.parents:
                raise NmtkdError(f"{in_name} ({in_path}) lies inside {out_name} ({out_path}), "
                                 "which is replaced whole")
            if real_input.is_dir() and real_input in real_output.parents:
                raise NmtkdError(f"{out_name} ({out_path}) lies inside {in_name} ({in_path}); "
                                 "an output may not write into an input")


def _temporary_name(target: Path) -> str:
    return f".{target.name}.{TMP_TAG}.{socket.gethostname()}.{os.getpid()}."


def _alive_here(name: str, target: Path) -> bool:
    """Whether a temporary belongs to a process still running on this host."""
    match = re.fullmatch(re.escape(f".{target.name}.{TMP_TAG}.") + r"(.+)\.(\d+)\.[^.]+", name)
    if not match or match.group(1) != socket.gethostname():
        return False
    pid = int(match.group(2))
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _legacy_temporary(entry: Path, target: Path) -> bool:
    """A temporary folder of an older nmtkd: `.<name>.XXXXXXXX/` holding at most `<name>`."""
    if not re.fullmatch(re.escape(f".{target.name}.") + r"[a-z0-9_]{8}", entry.name):
        return False
    return entry.is_dir() and all(child.name == target.name for child in entry.iterdir())


def sweep_stale_temporaries(target: Path) -> list[Path]:
    """Remove the temporaries that killed runs of this output left beside it."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    removed = []
    prefix = f".{target.name}.{TMP_TAG}."
    for entry in target.parent.iterdir():
        ours = entry.name.startswith(prefix) and not _alive_here(entry.name, target)
        if ours or _legacy_temporary(entry, target):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        path.unlink()


def _commit(moves: list[tuple[Path, Path]], backups: list[Path]) -> None:
    """Move each temporary onto its target; if one move fails, undo the others (new outputs
    removed, earlier ones put back), so that the outputs change together or not at all."""
    moved: list[tuple[Path, Path, bool]] = []
    try:
        for (tmp, target), backup in zip(moves, backups, strict=True):
            existed = os.path.lexists(target)
            if existed:
                os.replace(target, backup)
            try:
                os.replace(tmp, target)
            except OSError:
                if existed:
                    os.replace(backup, target)
                raise
            moved.append((target, backup, existed))
    except OSError:
        for target, backup, existed in reversed(moved):
            _remove(target)
            if existed:
                os.replace(backup, target)
        raise


@contextlib.contextmanager
def atomic_paths(targets: Sequence[str | Path], directory: bool = False,
                 owner: str | None = None,
                 legacy: Callable[[Path], bool] | None = None) -> Iterator[list[Path]]:
    """Yield one temporary path per target; move them all into place only if the block
    succeeds. With `directory`, each temporary is to be created as a directory, which gets the
    marker naming `owner`. On any error the temporaries are removed and targets untouched."""
    targets = [Path(t) for t in targets]
    for target in targets:
        check_output_kind(target, directory, owner, legacy)
    folders: list[Path] = []
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            sweep_stale_temporaries(target)
            folders.append(Path(tempfile.mkdtemp(prefix=_temporary_name(target),
                                                 dir=target.parent)))
        pairs = list(zip(folders, targets, strict=True))
        temporaries = [folder / target.name for folder, target in pairs]
        yield temporaries
        for target in targets:  # the block may have run long: check again before replacing
            check_output_kind(target, directory, owner, legacy)
        if directory:
            for tmp in temporaries:
                (tmp / MARKER).write_text(f"{owner}\n", encoding="utf-8")
        _commit(list(zip(temporaries, targets, strict=True)),
                [folder / f"{target.name}.previous" for folder, target in pairs])
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(target: str | Path, directory: bool = False, owner: str | None = None,
                legacy: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """`atomic_paths` for a single output."""
    with atomic_paths([target], directory, owner, legacy) as (tmp,):
        yield tmp


def mark_directory(directory: Path, owner: str) -> None:
    """Create a state directory (checked by `check_output_kind`) and mark it as `owner`'s."""
    directory.mkdir(parents=True, exist_ok=True)
    if _marker_owner(directory) != owner:
        (directory / MARKER).write_text(f"{owner}\n", encoding="utf-8")


@contextlib.contextmanager
def temporary_folder(target: str | Path) -> Iterator[Path]:
    """A scratch folder beside `target`, removed afterwards (and by the next run if killed)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(target)
    folder = Path(tempfile.mkdtemp(prefix=_temporary_name(target), dir=target.parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
