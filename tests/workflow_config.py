"""Builders of small workflow configs for the tests (written into a temporary workdir)."""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "schemas" / "config.schema.yaml"
SHARED_MULTI30K = Path(os.environ.get("NMTKD_DATA_MIRROR", REPO.parent / "shared/data/multi30k"))


def base_config() -> dict[str, Any]:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def tiny_config(experiment: str, data: dict[str, Any], **training: Any) -> dict[str, Any]:
    """The default config shrunk to minutes: tiny preset, small vocabulary, few updates."""
    config = base_config()
    config["experiment"] = experiment
    config["data"] = {"mirror": None, **data}
    config["sentencepiece"] = {"vocab_size": 500, "sample_size": 100000}
    config.pop("teachers")  # one teacher, given by the shorthand
    config["teacher"] = {"preset": "tiny", "resources": {"threads": 2, "mem_mb": 2000,
                                                        "runtime": 30}}
    config["training"].update({"max_tokens": 1024, "warmup": 100, "max_updates": 120,
                               "valid_interval": 60, "valid_bleu_sentences": 100,
                               "save_interval": 20, "average_last": 2, "device": "cpu",
                               **training})
    config["evaluation"].update({"threads": 2})
    config["evaluation"]["speed"] = {"testset": None, "threads": 2, "repeats": 1}
    config["student_defaults"] = {"preset": "tiny", "training": {},
                                  "resources": {"threads": 1, "mem_mb": 2000, "runtime": 30}}
    config["students"] = []  # the teacher only; see with_default_students
    config["comparison"] = {}
    del config["studies"], config["study"]  # one study, `comparison`, of every student
    return config


def synthetic_data(synthetic: dict[str, tuple[Path, Path]]) -> dict[str, Any]:
    """A config's `data` section for the synthetic corpus fixture (languages xx -> yy)."""
    return {"src_lang": "xx", "tgt_lang": "yy",
            "train": {"src": str(synthetic["train"][0]), "tgt": str(synthetic["train"][1])},
            "valid": {"src": str(synthetic["valid"][0]), "tgt": str(synthetic["valid"][1])},
            "test": {"synthetic": {"src": str(synthetic["test"][0]),
                                   "tgt": str(synthetic["test"][1])}}}


def with_default_students(config: dict[str, Any], **fine_tuning: Any) -> dict[str, Any]:
    """The default config's students (Kim & Rush's rows), fine-tuning shortened."""
    default = base_config()
    config["students"] = [student for student in default["students"]
                          if student["name"] in default["studies"]["kim_rush"]["students"]]
    config["comparison"] = {"baseline": "baseline"}
    # another seed than the teacher's: in the tiny config the baseline has the teacher's size
    config["student_defaults"]["training"] = {"seed": 2}
    for student in config["students"]:
        if "init" in student:
            student["training"] = {"lr": 3e-4, "warmup": 10, "max_updates": 40,
                                   "valid_interval": 20, **fine_tuning}
    return config


def add_student(config: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """Append a student to the config, and to every study if it has studies."""
    config["students"].append(entry)
    for study in config.get("studies", {}).values():
        study["students"].append(entry["name"])
    return config


def write_subset(source: Path, target: Path, lines: int) -> Path:
    with gzip.open(source, "rt", encoding="utf-8") as reader:
        head = [next(reader) for _ in range(lines)]
    target.write_text("".join(head), encoding="utf-8")
    return target


def multi30k_subset(directory: Path, train: int, other: int) -> dict[str, Any]:
    """Small plain-text copies of Multi30k splits (tests never write into shared/)."""
    names = {"train": ("train", train), "valid": ("val", other),
             "test_2016_flickr": ("test_2016_flickr", other)}
    data: dict[str, Any] = {"src_lang": "en", "tgt_lang": "de", "test": {}}
    for split, (stem, count) in names.items():
        pair = {side: str(write_subset(SHARED_MULTI30K / f"{stem}.{lang}.gz",
                                       directory / f"{split}.{lang}", count))
                for side, lang in (("src", "en"), ("tgt", "de"))}
        if split.startswith("test"):
            data["test"][split] = pair
        else:
            data[split] = pair
    return data


def run_snakemake(workdir: Path, config: dict[str, Any], *args: str,
                  check: bool = True, write: bool = True) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile in `workdir` with `config` as its config.yaml (with
    `write=False`, the config.yaml already there)."""
    if write:
        (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(workdir), *args],
        cwd=workdir, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


def plan_of(config: dict[str, Any]):
    """The workflow's plan of `config` (as a dry run would build it), without Snakemake."""
    from nmtkd.plan import plan_config

    return plan_config(config, SCHEMA)


def check_config_error(config_file: Path) -> str:
    """`nmtkd check-config` of a config file, run in-process: it fails with exit status 2 and
    one line, which is returned without the `nmtkd check-config: error: ` prefix."""
    from nmtkd.cli import main

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        status = main(["check-config", str(config_file), "--schema", str(SCHEMA)])
    lines = stderr.getvalue().splitlines()
    assert status == 2 and len(lines) == 1, (status, stderr.getvalue())
    prefix = "nmtkd check-config: error: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0].removeprefix(prefix)


def assert_plan_fails(config: dict[str, Any], expected: str) -> None:
    """Planning `config` fails with a message that contains `expected`, and `nmtkd
    check-config` of the config written to a file fails with the same message."""
    from nmtkd.errors import NmtkdError

    try:
        plan_of(config)
    except NmtkdError as error:
        assert expected in str(error), str(error)
        assert "\n" not in str(error)
        message = str(error)
    else:
        raise AssertionError(f"the config was planned; expected {expected!r}")
    with tempfile.TemporaryDirectory() as directory:
        config_file = Path(directory) / "config.yaml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        assert check_config_error(config_file) == message


def assert_dry_run_fails(workdir: Path, config: dict[str, Any], expected: str) -> None:
    """A dry run of `config` fails, its output contains `expected`, and `nmtkd check-config`
    of the same config.yaml fails with the dry run's message."""
    result = run_snakemake(workdir, config, "-n", check=False)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr
    line = next(line for line in result.stderr.splitlines() if expected in line)
    assert check_config_error(workdir / "config.yaml") == line
