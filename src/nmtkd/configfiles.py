"""Reading the workflow's config files: strict YAML, one-line schema errors, the schema's
defaults filled in as Snakemake's `validate` fills them, and a config file that sets `data` or
`students` owning its data or studies (nothing of another file's leaks in)."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from nmtkd.errors import NmtkdError

EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MERGE_TAG = "tag:yaml.org,2002:merge"


class StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys (YAML would keep the last silently)."""


def _mapping_without_duplicates(loader: StrictLoader, node: yaml.MappingNode) -> dict:
    # only the mapping's own keys count: a key from a `<<` merge is one an explicit key may
    # override, as YAML defines (construct_mapping resolves the merges, explicit keys last)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == MERGE_TAG:
            continue
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            continue  # an unhashable key: construct_mapping names it
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
    would go into (and replace) the default experiment's folder. Likewise a file that sets
    `students` owns the studies: the `studies`, `study` and `comparison.baseline` of the files
    before it name students it may not have, and are dropped."""
    files = [(Path(default), load_yaml(default))]
    files += [(Path(path), load_yaml(path)) for path in overrides]
    config: dict[str, Any] = {}
    for path, content in files:
        if config:
            config = _without_owned_sections(config, content, path, files[0][0])
        config = deep_merge(config, content)
    return deep_merge(config, command_line or {})


def _without_owned_sections(config: dict[str, Any], content: Mapping[str, Any], path: Path,
                            default: Path) -> dict[str, Any]:
    """`config` less what the next file, `content`, owns (see `merge_config_files`)."""
    config = dict(config)
    if "data" in content:
        if "experiment" not in content:
            raise NmtkdError(
                f"config error at experiment: {path} sets data but not experiment, so its "
                f"results would go to results/{config.get('experiment')}/ of {default}; add "
                f"'experiment: <a new name>' to {path}")
        config.pop("data", None)
    if "students" in content:
        config.pop("studies", None)
        config.pop("study", None)
        if isinstance(config.get("comparison"), Mapping):
            config["comparison"] = {key: value for key, value in config["comparison"].items()
                                    if key != "baseline"}
    return config


def read_workflow_config(default: str | Path | None, overrides: Sequence[str | Path],
                         command_line: Mapping[str, Any] | None, schema: str | Path) -> dict:
    """The config a workflow run uses: `default` (config.yaml, if there is one) with each
    --configfile on top, then --config values; checked and completed (`resolve_config`)."""
    files = list(overrides)
    if default is None:
        if not files:
            raise NmtkdError("no config.yaml in the working directory and no --configfile given")
        default = files.pop(0)
    config = merge_config_files(default, files, command_line)
    return resolve_config(config, schema, command_line)


def resolve_config(config: Mapping[str, Any], schema: str | Path | Mapping[str, Any],
                   command_line: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A merged config checked (finite numbers, a plain experiment name, the schema) and
    completed with the schema's defaults: a new mapping, `config` is left as it is.
    `command_line`: the --config values, named in a type error they caused."""
    schema = load_schema(schema)
    check_finite(config)
    check_experiment_name(config)
    filled = with_defaults(config, schema)
    for checked in (config, filled):  # a default could break a rule the config alone passes
        problem = schema_error(checked, schema, command_line)
        if problem:
            raise NmtkdError(problem)
    return filled


def load_schema(schema: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(schema, Mapping):
        return dict(schema)
    return yaml.safe_load(Path(schema).read_text(encoding="utf-8"))


def key_name(path: Sequence[str | int]) -> str:
    """A config key as messages name it: `students[2].training.lr`."""
    key = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path)
    return key.replace(".[", "[") or "<top level>"


def _numbers(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple, float]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _numbers(item, (*path, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _numbers(item, (*path, index))
    elif isinstance(value, float):
        yield path, value


def check_finite(config: Mapping[str, Any]) -> None:
    """YAML's .nan and .inf pass every `type: number` bound of the schema; refuse them."""
    for path, number in _numbers(config):
        if not math.isfinite(number):
            raise NmtkdError(f"config error at {key_name(path)}: must be a finite number, "
                             f"got {number}")


def with_defaults(config: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `config` with the schema's defaults filled in, as Snakemake's
    `validate(set_default=True)` fills them: each `properties` keyword the validator meets sets
    its missing keys' defaults before checking them (so nested defaults fill defaults)."""
    import jsonschema

    base = jsonschema.validators.validator_for(schema)
    check_properties = base.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: dict, instance: Any, subschema: dict) -> Any:
        if isinstance(instance, dict):
            for name, property_schema in properties.items():
                if "default" in property_schema:
                    instance.setdefault(name, copy.deepcopy(property_schema["default"]))
        yield from check_properties(validator, properties, instance, subschema)

    filled = copy.deepcopy(dict(config))
    for _ in jsonschema.validators.extend(base, {"properties": set_defaults})(
            schema).iter_errors(filled):
        pass  # errors are schema_error's to report; the walk fills the defaults
    return filled


def check_experiment_name(config: Mapping[str, Any]) -> None:
    name = config.get("experiment")
    if isinstance(name, str) and not EXPERIMENT_NAME.fullmatch(name):
        raise NmtkdError(f"config error at experiment: {name!r} is not a plain name (letters, "
                         "digits, '_', '.', '-', starting with a letter or digit); results go "
                         "to results/<experiment>/ and nothing is written outside it")


def schema_error(config: Mapping[str, Any], schema: str | Path | Mapping[str, Any],
                 command_line: Mapping[str, Any] | None = None) -> str | None:
    """The most relevant schema violation as one line naming its key, or None. A type error in
    a text that came from --config says so: Snakemake reads nested --config values as text."""
    import jsonschema

    schema = load_schema(schema)
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(dict(config)))
    if error is None:
        return None
    message = error.message
    if len(message) > 200:
        message = message[:200] + "..."
    path = list(error.absolute_path)
    if error.validator in ("type", "oneOf", "anyOf") and _text_from(command_line, path):
        given = "gives the values inside {...} as text" if len(path) > 1 else "gave it as text"
        message += f" (from --config, which {given}: set nested keys in a --configfile)"
    return f"config error at {key_name(path)}: {message}"


def _text_from(command_line: Mapping[str, Any] | None, path: Sequence[str | int]) -> bool:
    """Whether the value at `path` came from the --config values, as text."""
    value: Any = command_line or {}
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    return isinstance(value, str) and bool(path)
