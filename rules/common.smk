# Helpers shared by every stage: config validation, paths, per-rule settings.
import json
import re
import shlex

from snakemake.utils import validate

from nmtkd.losses import LOSSES


validate(config, schema="../schemas/config.schema.yaml")


def config_error(key, message):
    raise ValueError(f"config error at {key}: {message}")


def check_config():
    presets = config["presets"]
    teacher_preset = config["teacher"]["preset"]
    if teacher_preset not in presets:
        config_error("teacher.preset", f"unknown preset {teacher_preset!r} "
                     f"(known: {', '.join(sorted(presets))})")
    for key, settings in (("training", config["training"]),
                          ("teacher.training", config["teacher"].get("training", {}))):
        loss = settings.get("loss", {}).get("name")
        if loss is not None and loss not in LOSSES:
            config_error(f"{key}.loss.name", f"unknown loss {loss!r} "
                         f"(known: {', '.join(sorted(LOSSES))})")
    for name in config["data"]["test"]:
        if name in ("train", "valid"):
            config_error(f"data.test.{name}", "a test set cannot be named train or valid")
    for name, preset in presets.items():
        if preset["d_model"] % preset["heads"]:
            config_error(f"presets.{name}", "d_model must be divisible by heads")


check_config()

EXPERIMENT = config["experiment"]
RESULTS = f"results/{EXPERIMENT}"
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
SRC = config["data"]["src_lang"]
TGT = config["data"]["tgt_lang"]
TESTSETS = list(config["data"]["test"])
SPLITS = ["train", "valid", *TESTSETS]
QUANTIZATIONS = config["export"]["quantizations"]
MODELS = ["teacher"]
EVAL = config["evaluation"]
BEAM = EVAL["beam_size"]


def alternatives(names):
    return "|".join(re.escape(name) for name in names)


wildcard_constraints:
    split=alternatives(SPLITS),
    testset=alternatives(TESTSETS),
    lang=alternatives([SRC, TGT]),
    model=alternatives(MODELS),
    quant=alternatives(QUANTIZATIONS),
    encoded_split="train|valid",


def quoted_json(value):
    return shlex.quote(json.dumps(value, sort_keys=True))


def fetch_arguments(wildcards):
    """Arguments of `nmtkd fetch` for one dataset of the config."""
    data = config["data"]
    spec = data[wildcards.split] if wildcards.split in ("train", "valid") else data["test"][
        wildcards.split]
    if isinstance(spec, str):  # sacrebleu:<testset>
        spec = {"src": spec, "tgt": spec}
    args = ["--src", spec["src"], "--tgt", spec["tgt"], "--langpair", f"{SRC}-{TGT}"]
    for side in ("src", "tgt"):
        if spec.get(f"{side}_sha256"):
            args += [f"--{side}-sha256", spec[f"{side}_sha256"]]
    if data.get("mirror"):
        args += ["--mirror", data["mirror"]]
    return " ".join(shlex.quote(a) for a in args)


def cleaning_flags():
    rules = config["cleaning"]
    flags = []
    if rules["drop_src_equals_tgt"]:
        flags.append("--drop-src-equals-tgt")
    if not rules["deduplicate"]:
        flags.append("--keep-duplicates")
    return " ".join(flags)


def encode_input(wildcards):
    if wildcards.encoded_split == "train":
        return f"{RESULTS}/data/clean/train.{wildcards.lang}"
    return f"{RESULTS}/data/raw/valid.{wildcards.lang}"


def model_section(model):
    return config[model]


def model_settings(model):
    """The `nmtkd train --settings` JSON: preset and merged trainer settings of one model."""
    section = model_section(model)
    training = {**config["training"], **section.get("training", {})}
    return quoted_json({"model": config["presets"][section["preset"]], "training": training})


def model_device(model):
    section = model_section(model)
    return section.get("training", {}).get("device", config["training"].get("device", "auto"))


def model_gpus(model):
    """GPUs to request: one when the configured device is CUDA, none otherwise."""
    return 1 if model_device(model) == "cuda" else 0


def rule_resource(section, key):
    """A resource of a config section (e.g. teacher), falling back to the global default."""
    return config.get(section, {}).get("resources", {}).get(key, config["resources"][key])


def default_resource(key):
    return config["resources"][key]
