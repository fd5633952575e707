"""Reading the workflow's config files: strict YAML, one-line schema errors, and a config file
that sets `data` owning its data (test sets and checksums of another file never leak in)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from nmtkd.errors import NmtkdError

EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys (YAML would keep the last silently)."""


def _mapping_without_duplicates(loader: StrictLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)  # resolves `<<` merge keys first
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=True)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                             _mapping_without_duplicates)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A config file as a mapping; a syntax error or duplicate key names its line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise NmtkdError(f"{path}: cannot read the config file ({error.strerror})") from None
    except UnicodeDecodeError:
        raise NmtkdError(f"{path}: the config file is not UTF-8 text") from None
    try:
        value = yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(filter(None, (error.context, error.problem)))
        raise NmtkdError(f"{path}{where}: {problem}") from None
    except yaml.YAMLError as error:
        raise NmtkdError(f"{path}: not valid YAML ({error})") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise NmtkdError(f"{path}: a config file must be a mapping of keys at the top level")
    return value


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` on top of `base`, recursively for nested mappings."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def merge_config_files(default: str | Path, overrides: Sequence[str | Path],
                       command_line: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The default config with each override file on top, then `--config` values.

    A file that sets `data` owns the data section: the data of the files before it (test sets,
    checksums, mirror) is dropped rather than merged, so an En-Fr file never inherits the
    default's German test sets. Such a file must also name its `experiment`, or its results
    would go into (and replace) the default experiment's folder."""
    files = [(Path(default), load_yaml(default))]
    files += [(Path(path), load_yaml(path)) for path in overrides]
    config: dict[str, Any] = {}
    for path, content in files:
        if "data" in content and config:
            if "experiment" not in content:
                raise NmtkdError(
                    f"config error at experiment: {path} sets data but not experiment, so its "
                    f"results would go to results/{config.get('experiment')}/ of "
                    f"{files[0][0]}; add 'experiment: <a new name>' to {path}")
            config = {key: value for key, value in config.items() if key != "data"}
        config = deep_merge(config, content)
    return deep_merge(config, command_line or {})


def read_workflow_config(default: str | Path | None, overrides: Sequence[str | Path],
                         command_line: Mapping[str, Any] | None, schema: str | Path) -> dict:
    """The config a workflow run uses: `default` (config.yaml, if there is one) with each
    --configfile on top, then --config values; a plain experiment name; schema-valid."""
    files = list(overrides)
    if default is None:
        if not files:
            raise NmtkdError("no config.yaml in the working directory and no --configfile given")
        default = files.pop(0)
    config = merge_config_files(default, files, command_line)
    check_experiment_name(config)
    problem = schema_error(config, schema)
    if problem:
        raise NmtkdError(problem)
    return config


def check_experiment_name(config: Mapping[str, Any]) -> None:
    name = config.get("experiment")
    if isinstance(name, str) and not EXPERIMENT_NAME.fullmatch(name):
        raise NmtkdError(f"config error at experiment: {name!r} is not a plain name (letters, "
                         "digits, '_', '.', '-', starting with a letter or digit); results go "
                         "to results/<experiment>/ and nothing is written outside it")


def schema_error(config: Mapping[str, Any], schema_path: str | Path) -> str | None:
    """The most relevant schema violation as one line naming its key, or None."""
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(dict(config)))
    if error is None:
        return None
    key = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in error.absolute_path)
    key = key.replace(".[", "[") or "<top level>"
    message = error.message
    if len(message) > 200:
        message = message[:200] + "..."
    return f"config error at {key}: {message}"
