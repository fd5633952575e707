# Helpers shared by every stage: config validation, paths, per-rule settings.
import json
import re
import shlex
from pathlib import Path

from snakemake.utils import validate

from nmtkd.losses import LOSSES


validate(config, schema="../schemas/config.schema.yaml")


def config_error(key, message):
    raise ValueError(f"config error at {key}: {message}")


def deep_merge(base, override):
    """`override` on top of `base`, recursively for nested mappings."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def merged_training(model):
    """A model's trainer settings: the global `training` with its own overrides on top."""
    return deep_merge(config["training"], config[model].get("training", {}))


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
    if config["distill"]["nbest"] > config["distill"]["beam_size"]:
        config_error("distill.nbest", "must not exceed distill.beam_size")
    if config["data"]["src_lang"] == config["data"]["tgt_lang"]:
        config_error("data.tgt_lang", "must differ from data.src_lang")
    positions = presets[teacher_preset].get("max_positions", 1024)
    max_length = merged_training("teacher")["max_length"]
    if max_length >= positions:
        config_error("training.max_length", f"{max_length} must be below the teacher preset's "
                     f"max_positions ({positions})")
    if config["evaluation"]["max_length"] >= positions:
        config_error("evaluation.max_length", f"must be below the teacher preset's "
                     f"max_positions ({positions})")


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
DISTILL = config["distill"]
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


# ---- reusing an existing teacher ---------------------------------------------------------------
EXISTING = config["teacher"].get("existing") or {}


def check_existing_teacher():
    key = "teacher.existing"
    if not EXISTING:
        return
    if "checkpoint" in EXISTING and "spm" not in EXISTING:
        config_error(f"{key}.spm", "a torch checkpoint needs the SentencePiece model it was "
                     "trained with")
    for name, path in EXISTING.items():
        if not Path(path).exists():
            config_error(f"{key}.{name}", f"{path} does not exist")
    if "ct2_model" in EXISTING and not (Path(EXISTING["ct2_model"]) / "spm.model").is_file():
        config_error(f"{key}.ct2_model", f"{EXISTING['ct2_model']} has no spm.model beside the "
                     "model (export with `nmtkd export`, or copy it there)")


check_existing_teacher()
TEACHER_IS_CT2_ONLY = "ct2_model" in EXISTING and "checkpoint" not in EXISTING
# losses that run the teacher's torch model next to the student
TEACHER_LOSSES = {"word_kd"}


def check_teacher_losses():
    for key, settings in (("training", config["training"]),
                          ("teacher.training", config["teacher"].get("training", {}))):
        name = settings.get("loss", {}).get("name")
        if TEACHER_IS_CT2_ONLY and name in TEACHER_LOSSES:
            config_error(f"{key}.loss.name", f"{name!r} needs the teacher's torch checkpoint, "
                         "but teacher.existing gives only a CTranslate2 model; add "
                         "teacher.existing.checkpoint and .spm")


check_teacher_losses()


def spm_model():
    """The SentencePiece model of the run: the existing teacher's, else the trained one."""
    if "spm" in EXISTING:
        return EXISTING["spm"]
    if "ct2_model" in EXISTING:
        return str(Path(EXISTING["ct2_model"]) / "spm.model")
    return f"{RESULTS}/spm/spm.model"


def torch_checkpoint(wildcards):
    """A model's torch checkpoint: the existing teacher's, else the trained one."""
    if wildcards.model == "teacher" and "checkpoint" in EXISTING:
        return EXISTING["checkpoint"]
    return f"{RESULTS}/models/{wildcards.model}/model.pt"


def ct2_float32_model_of_teacher():
    """The teacher's float32 CTranslate2 directory: the existing one, else the export."""
    if TEACHER_IS_CT2_ONLY:
        return EXISTING["ct2_model"]
    return f"{RESULTS}/models/teacher/ct2_float32"


def ct2_float32_model(wildcards):
    """A model's float32 CTranslate2 directory used for decoding."""
    if wildcards.model == "teacher":
        return ct2_float32_model_of_teacher()
    return f"{RESULTS}/models/{wildcards.model}/ct2_float32"


def teacher_exports():
    """The exports `all` asks for: none to make when the teacher is an existing CT2 model."""
    if TEACHER_IS_CT2_ONLY:
        return []
    return expand(f"{RESULTS}/models/teacher/ct2_{{quant}}", quant=QUANTIZATIONS)


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


def model_settings(model):
    """The `nmtkd train --settings` JSON: preset and merged trainer settings of one model."""
    preset = config["presets"][config[model]["preset"]]
    return quoted_json({"model": preset, "training": merged_training(model)})


def model_processes(model):
    """Data-parallel training processes of a model: one per GPU on CUDA, CPU workers else."""
    return config[model].get("processes", 1)


def model_gpus(model):
    """GPUs to request: one per process when the configured device is CUDA, none otherwise."""
    return model_processes(model) if merged_training(model)["device"] == "cuda" else 0


def rule_resource(section, key):
    """A resource of a config section (e.g. teacher), falling back to the global default."""
    return config.get(section, {}).get("resources", {}).get(key, config["resources"][key])


def default_resource(key):
    return config["resources"][key]
