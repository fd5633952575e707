"""Command-line path arguments with a role (input, output file, output directory, state
directory), checked together before a command does any work."""

from __future__ import annotations

import argparse
import fnmatch
from dataclasses import dataclass
from pathlib import Path

from nmtkd.safepaths import (
    check_distinct,
    check_input,
    check_output_kind,
    check_writable_parent,
)

INPUT, OUTPUT, OUTPUT_DIR, STATE_DIR = "input", "output", "output directory", "state directory"
LOCATION = "location"  # an input that may also be a URL or a sacrebleu: name

# What a directory written by a command looked like before markers existed, so that results
# of earlier versions are still replaced (exports) or resumed (training state).
EXPORT_FILES = {"model.bin", "config.json", "shared_vocabulary.json", "shared_vocabulary.txt",
                "source_vocabulary.json", "target_vocabulary.json", "vocabulary.json",
                "vocabulary.txt", "spm.model"}
TRAIN_STATE_PATTERNS = ("state.pt", "best.pt", "snapshot_*.pt", "train_log.jsonl", ".*.pt.*")


def legacy_export(directory: Path) -> bool:
    names = {entry.name for entry in directory.iterdir()}
    return {"model.bin", "config.json"} <= names <= EXPORT_FILES


def legacy_train_state(directory: Path) -> bool:
    return all(any(fnmatch.fnmatch(entry.name, pattern) for pattern in TRAIN_STATE_PATTERNS)
               for entry in directory.iterdir())


LEGACY = {"export": legacy_export, "train": legacy_train_state}


@dataclass(frozen=True)
class PathRole:
    dest: str
    flag: str
    role: str


def add_path(parser: argparse.ArgumentParser, flag: str, role: str, **kwargs) -> None:
    """Add a path argument and record its role for `check_paths`."""
    action = parser.add_argument(flag, **kwargs)
    roles = parser.get_default("path_roles") or []
    parser.set_defaults(path_roles=[*roles, PathRole(action.dest, flag, role)])


def _named_paths(args: argparse.Namespace, roles: list[PathRole]) -> dict[str, Path]:
    named: dict[str, Path] = {}
    for role in roles:
        value = getattr(args, role.dest, None)
        if value is None:
            continue
        if isinstance(value, list):
            for index, item in enumerate(value):
                named[f"{role.flag}[{index}]"] = Path(item)
        elif value != "":
            named[role.flag] = Path(value)
    return named


def check_paths(args: argparse.Namespace, extra_outputs: dict[str, Path] | None = None,
                extra_inputs: dict[str, Path] | None = None) -> None:
    """Check every path of a command before it starts: inputs exist; outputs are distinct
    from each other and from the inputs, replace only what this command wrote, and lie in a
    writable folder."""
    roles: list[PathRole] = getattr(args, "path_roles", None) or []
    command = args.command
    for path in _named_paths(args, [r for r in roles if r.role == INPUT]).values():
        check_input(path)
    inputs = _named_paths(args, [r for r in roles if r.role in (INPUT, LOCATION)])
    inputs.update(extra_inputs or {})
    outputs = _named_paths(args, [r for r in roles if r.role not in (INPUT, LOCATION)])
    outputs.update(extra_outputs or {})
    flag_roles = _flag_roles(roles, outputs)
    directories = [name for name, role in flag_roles.items() if role in (OUTPUT_DIR, STATE_DIR)]
    check_distinct(outputs, inputs, directories)
    for name, path in outputs.items():
        directory = name in directories
        check_output_kind(path, directory, command, LEGACY.get(command) if directory else None)
        check_writable_parent(path)


def _flag_roles(roles: list[PathRole], outputs: dict[str, Path]) -> dict[str, str]:
    by_flag = {role.flag: role.role for role in roles}
    return {name: by_flag.get(name.split("[")[0], OUTPUT) for name in outputs}
