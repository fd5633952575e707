# Helpers shared by every stage: config validation, paths, per-rule settings.
import json
import re
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

from nmtkd.configfiles import (check_experiment_name, deep_merge, merge_config_files,
                               schema_error)
from nmtkd.errors import NmtkdError
from nmtkd.losses import LOSSES
from nmtkd.variants import PARTS as CORPUS_PARTS

SCHEMA = Path(workflow.basedir) / "schemas" / "config.schema.yaml"


def stop(message):
    """A config problem: one line, no traceback, nothing run."""
    print(message, file=sys.stderr)
    sys.exit(1)


def config_error(key, message):
    stop(f"config error at {key}: {message}")


def load_config():
    """config.yaml with each --configfile on top (a file that sets `data` owns it), then
    --config values; checked against the schema, which fills in the defaults."""
    default = "config.yaml" if Path("config.yaml").exists() else None
    files = list(workflow.overwrite_configfiles)
    if default is None and not files:
        stop("no config.yaml in the working directory and no --configfile given")
    try:
        resolved = merge_config_files(default or files.pop(0), files,
                                      workflow.config_settings.config)
        check_experiment_name(resolved)
    except NmtkdError as error:
        stop(str(error))
    problem = schema_error(resolved, SCHEMA)
    if problem:
        stop(problem)
    config.clear()
    config.update(resolved)
    validate(config, schema=str(SCHEMA))


load_config()


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
EVAL = config["evaluation"]
DISTILL = config["distill"]
BEAM = EVAL["beam_size"]
BEAMS = sorted({1, BEAM})  # K=1 (greedy) and K=beam, as in Kim & Rush's tables
SPEED = EVAL["speed"]
SPEED_TESTSET = SPEED.get("testset") or TESTSETS[0]
if SPEED_TESTSET not in TESTSETS:
    config_error("evaluation.speed.testset", f"unknown test set {SPEED_TESTSET!r} (known: "
                 f"{', '.join(TESTSETS)})")


# ---- students -----------------------------------------------------------------------------------
def student_entry(index):
    """A student's settings: `student_defaults` with the list entry's own keys on top."""
    return deep_merge(config["student_defaults"], config["students"][index])


def student_parts(entry):
    return [entry["data"]] if isinstance(entry["data"], str) else list(entry["data"])


def variant_name(parts):
    return "+".join(parts)


def resolve_loss(spec):
    """A loss entry (a name or {name, parameters}) with the `losses` defaults under it."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    return {**config["losses"].get(spec["name"], {}), **spec}


def student_training(entry):
    """A student's trainer settings. Its loss: `loss:`, else its own `training.loss`, else the
    name of the global `training.loss`; the `losses` defaults go under each of them, so a
    student without `loss:` trains exactly like one with `loss: nll`."""
    training = deep_merge(config["training"], entry.get("training", {}))
    if "loss" in entry:
        spec = entry["loss"]
    elif "loss" in entry.get("training", {}):
        spec = training["loss"]
    else:
        spec = training["loss"]["name"]
    training["loss"] = resolve_loss(spec)
    return training


def check_loss_parameters(key, spec, preset):
    """Build the loss once (with a small stand-in teacher), so that a wrong parameter fails
    now, naming its key, and not when the student's training starts."""
    from nmtkd.errors import NmtkdError
    from nmtkd.losses import build_loss
    from nmtkd.model import ModelConfig, Transformer

    spec = dict(spec)
    if spec["name"] in TEACHER_LOSSES:
        teacher_positions = config["presets"][config["teacher"]["preset"]].get(
            "max_positions", 1024)
        if teacher_positions < config["presets"][preset].get("max_positions", 1024):
            config_error(f"{key}.name", "the teacher's preset has fewer max_positions than the "
                         "student's; the teacher must read every training pair")
        spec["teacher"] = Transformer(ModelConfig(vocab_size=8, d_model=8, heads=1,
                                                  encoder_layers=1, decoder_layers=1, ffn_dim=8))
    try:
        build_loss(spec)
    except (NmtkdError, TypeError, ValueError) as error:
        config_error(key, str(error))


def check_students():
    presets = config["presets"]
    names = [entry["name"] for entry in config["students"]]
    for index, name in enumerate(names):
        key = f"students[{index}]"
        entry = student_entry(index)
        if name == "teacher" or names.index(name) != index:
            config_error(f"{key}.name", f"{name!r} is " + ("reserved for the teacher"
                         if name == "teacher" else "used by an earlier student"))
        if entry["preset"] not in presets:
            config_error(f"{key}.preset", f"unknown preset {entry['preset']!r} (known: "
                         f"{', '.join(sorted(presets))})")
        for part in student_parts(entry):
            if part not in CORPUS_PARTS:
                config_error(f"{key}.data", f"unknown data variant {part!r} (known: "
                             f"{', '.join(CORPUS_PARTS)}, or a list of them)")
            if part == "best2" and DISTILL["nbest"] < 2:
                config_error(f"{key}.data", "best2 needs distill.nbest >= 2")
        loss = student_training(entry)["loss"]
        loss_key = f"{key}.loss" + (".name" if isinstance(entry.get("loss"), dict) else "")
        if loss["name"] not in LOSSES:
            config_error(loss_key, f"unknown loss {loss['name']!r} (known: "
                         f"{', '.join(sorted(LOSSES))})")
        check_loss_parameters(f"{key}.loss", loss, entry["preset"])
        if loss["name"] in TEACHER_LOSSES and TEACHER_IS_CT2_ONLY:
            config_error(loss_key, f"{loss['name']!r} needs the teacher's torch checkpoint, but "
                         "teacher.existing gives only a CTranslate2 model")
        init = entry.get("init")
        if init is not None:
            if init == name:
                config_error(f"{key}.init", f"{name!r} cannot initialise from itself; name "
                             "another student to fine-tune")
            if init not in names:
                config_error(f"{key}.init", f"unknown init checkpoint {init!r}: it must name "
                             f"another student (known: {', '.join(n for n in names if n != name)})")
            if student_entry(names.index(init))["preset"] != entry["preset"]:
                config_error(f"{key}.init", f"{init!r} uses another preset than {name!r}; "
                             "fine-tuning needs the same architecture")
        positions = presets[entry["preset"]].get("max_positions", 1024)
        if student_training(entry)["max_length"] >= positions:
            config_error(f"{key}.training.max_length", f"must be below the preset's "
                         f"max_positions ({positions})")
    for index, name in enumerate(names):  # an init chain must end
        seen, current = {name}, student_entry(index).get("init")
        while current is not None:
            if current in seen:
                config_error(f"students[{index}].init", f"the init chain of {name!r} loops "
                             f"back to {current!r}")
            seen.add(current)
            current = student_entry(names.index(current)).get("init")
    for name in config["losses"]:
        if name not in LOSSES:
            config_error(f"losses.{name}", f"unknown loss {name!r} (known: "
                         f"{', '.join(sorted(LOSSES))})")
    baseline = config["comparison"].get("baseline")
    if baseline is not None and baseline not in names:
        config_error("comparison.baseline", f"{baseline!r} is not a student (known: "
                     f"{', '.join(names)})")


def default_baseline():
    """The comparison's baseline: as configured, else the first student trained from scratch
    on gold data with the plain NLL loss."""
    if "baseline" in config["comparison"]:
        return config["comparison"]["baseline"]
    for name, entry in STUDENTS.items():
        if (student_parts(entry) == ["gold"] and "init" not in entry
                and student_training(entry)["loss"]["name"] == "nll"):
            return name
    return None


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
    if "checkpoint" in EXISTING or TEACHER_IS_CT2_ONLY:
        return  # an existing teacher is not trained
    own = "loss" in config["teacher"].get("training", {})
    key = "teacher.training.loss" if own else "training.loss"
    loss = merged_training("teacher")["loss"]
    if loss.get("name") in TEACHER_LOSSES:
        config_error(f"{key}.name", f"the teacher cannot train with {loss['name']!r}: that "
                     "loss distils from a teacher (use nll)")
    check_loss_parameters(key, loss, config["teacher"]["preset"])


check_teacher_losses()
check_students()
STUDENTS = {entry["name"]: student_entry(i) for i, entry in enumerate(config["students"])}
MODELS = ["teacher", *STUDENTS]
VARIANTS = sorted({variant_name(student_parts(entry)) for entry in STUDENTS.values()} - {"gold"})
BASELINE = default_baseline()


def alternatives(names):
    return "|".join(re.escape(name) for name in names)


wildcard_constraints:
    split=alternatives(SPLITS),
    testset=alternatives(TESTSETS),
    lang=alternatives([SRC, TGT]),
    model=alternatives(MODELS),
    student=alternatives(STUDENTS) or "(?!)",
    variant=alternatives(VARIANTS) or "(?!)",
    beam=alternatives([str(b) for b in BEAMS]),
    quant=alternatives(QUANTIZATIONS),
    encoded_split="train|valid",


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


# ---- student corpora and training ----------------------------------------------------------------
CORPUS_PART_FILES = {
    "gold": f"{RESULTS}/data/clean/train.{TGT}",
    "seqkd": f"{RESULTS}/distill/seqkd.{TGT}",
    "seqinter": f"{RESULTS}/distill/seqinter.{TGT}",
    "best2": f"{RESULTS}/distill/nbest.tsv",
}
CORPUS_PART_OPTIONS = {"gold": "gold", "seqkd": "seqkd", "seqinter": "seqinter", "best2": "nbest"}


def corpus_inputs(wildcards):
    """The files a training corpus variant (parts joined by +) is built from."""
    inputs = {"source": f"{RESULTS}/data/clean/train.{SRC}", "spm": spm_model()}
    for part in wildcards.variant.split("+"):
        inputs[part] = CORPUS_PART_FILES[part]
    return inputs


def corpus_arguments(wildcards):
    parts = wildcards.variant.split("+")
    args = ["--parts", *parts]
    for part in dict.fromkeys(parts):
        args += [f"--{CORPUS_PART_OPTIONS[part]}", CORPUS_PART_FILES[part]]
    return " ".join(shlex.quote(a) for a in args)


def teacher_torch_checkpoint():
    return EXISTING.get("checkpoint", f"{RESULTS}/models/teacher/model.pt")


def student_needs_teacher(entry):
    return student_training(entry)["loss"]["name"] in TEACHER_LOSSES


def student_corpus(entry):
    """The encoded training data of a student: the teacher's own for gold data alone (so
    the teacher and gold students become ready together, and the teacher's priority counts)."""
    parts = student_parts(entry)
    stem = ("data/spm/train" if parts == ["gold"] else
            f"data/spm/variants/{variant_name(parts)}")
    return {"train_src": f"{RESULTS}/{stem}.{SRC}", "train_tgt": f"{RESULTS}/{stem}.{TGT}"}


def student_inputs(wildcards):
    entry = STUDENTS[wildcards.student]
    inputs = {
        **student_corpus(entry),
        "valid_src": f"{RESULTS}/data/spm/valid.{SRC}",
        "valid_tgt": f"{RESULTS}/data/spm/valid.{TGT}",
        "valid_ref": f"{RESULTS}/data/raw/valid.{TGT}",
        "spm": spm_model(),
    }
    if student_needs_teacher(entry):
        inputs["teacher"] = teacher_torch_checkpoint()
    if entry.get("init"):
        inputs["init"] = f"{RESULTS}/models/{entry['init']}/model.pt"
    return inputs


def student_settings(wildcards):
    """`nmtkd train --settings` of a student; word-level losses get the teacher's checkpoint."""
    entry = STUDENTS[wildcards.student]
    training = student_training(entry)
    if student_needs_teacher(entry):
        training["loss"] = {**training["loss"], "teacher": teacher_torch_checkpoint()}
    return quoted_json({"model": config["presets"][entry["preset"]], "training": training})


def student_init_argument(wildcards):
    init = STUDENTS[wildcards.student].get("init")
    return f"--init {shlex.quote(f'{RESULTS}/models/{init}/model.pt')}" if init else ""


def student_processes(wildcards):
    return STUDENTS[wildcards.student].get("processes", 1)


def student_threads(wildcards):
    return STUDENTS[wildcards.student].get("resources", {}).get(
        "threads", default_resource("threads"))


def student_mem_mb(wildcards):
    return STUDENTS[wildcards.student].get("resources", {}).get(
        "mem_mb", default_resource("mem_mb"))


def student_runtime(wildcards):
    return STUDENTS[wildcards.student].get("resources", {}).get(
        "runtime", default_resource("runtime"))


def student_gpus(wildcards):
    entry = STUDENTS[wildcards.student]
    return student_processes(wildcards) if student_training(entry)["device"] == "cuda" else 0


# ---- evaluation of every model -------------------------------------------------------------------
def ct2_model(wildcards):
    """A model's CTranslate2 directory for one quantization. A teacher given only as a CT2
    model is quantized when loaded (compute_type) instead."""
    if wildcards.model == "teacher" and TEACHER_IS_CT2_ONLY:
        return EXISTING["ct2_model"]
    return f"{RESULTS}/models/{wildcards.model}/ct2_{wildcards.quant}"


def compute_type(wildcards):
    if wildcards.model == "teacher" and TEACHER_IS_CT2_ONLY and wildcards.quant != "float32":
        return wildcards.quant
    return "default"


def has_agreement():
    """Top-1 Agreement needs the teacher's torch model."""
    return not TEACHER_IS_CT2_ONLY


def model_description(name):
    if name == "teacher":
        return {"data": "gold", "loss": merged_training("teacher")["loss"]["name"], "init": ""}
    entry = STUDENTS[name]
    return {"data": variant_name(student_parts(entry)),
            "loss": student_training(entry)["loss"]["name"], "init": entry.get("init", "")}


def training_benchmark(name):
    if name == "teacher":
        return f"{BENCHMARKS}/train_teacher.tsv"
    return f"{BENCHMARKS}/train_student/{name}.tsv"


def comparison_manifest():
    """Every model's result files, for `nmtkd compare`."""
    quantized = "int8" in QUANTIZATIONS
    models = []
    for name in MODELS:
        trained = name != "teacher" or not ("checkpoint" in EXISTING or TEACHER_IS_CT2_ONLY)
        ct2 = {quant: None if name == "teacher" and TEACHER_IS_CT2_ONLY else
               f"{RESULTS}/models/{name}/ct2_{quant}" for quant in ("float32", "int8")
               if quant in QUANTIZATIONS}
        if name == "teacher" and TEACHER_IS_CT2_ONLY:
            ct2["float32"] = EXISTING["ct2_model"]
        models.append({
            "name": name, **model_description(name),
            "training": f"{RESULTS}/models/{name}/training.json" if trained else None,
            "benchmark": training_benchmark(name) if trained else None,
            "ct2": ct2,
            "speed": {quant: f"{RESULTS}/speed/{name}.{quant}.json"
                      for quant in ("float32", "int8") if quant in QUANTIZATIONS},
            "eval": {testset: {
                "k1": f"{RESULTS}/eval/{name}/{testset}.float32.beam1.json",
                "beam": f"{RESULTS}/eval/{name}/{testset}.float32.beam{BEAM}.json",
                **({"int8": f"{RESULTS}/eval/{name}/{testset}.int8.beam{BEAM}.json"}
                   if quantized else {}),
            } for testset in TESTSETS},
            "agreement": {testset: f"{RESULTS}/eval/{name}/{testset}.agreement.json"
                          for testset in TESTSETS} if has_agreement() else {},
        })
    timing = ("one timed run" if SPEED["repeats"] == 1
              else f"fastest of {SPEED['repeats']} timed runs")
    return {"experiment": EXPERIMENT, "teacher": "teacher", "baseline": BASELINE,
            "beam_size": BEAM,
            "testsets": TESTSETS, "speed_testset": SPEED_TESTSET, "models": models,
            "speed_settings": f"beam {SPEED['beam_size']}, batch {SPEED['batch_size']}, "
                              f"{SPEED['threads']} threads, {timing}"}


def comparison_inputs():
    """Every file the manifest names (directories included)."""
    files = []

    def collect(value):
        if isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, str) and value.startswith(RESULTS):
            files.append(value)

    for model in comparison_manifest()["models"]:
        collect({k: v for k, v in model.items() if k not in ("name", "data", "loss", "init")})
    return files


def evaluation_metadata(wildcards):
    decoding = "greedy" if wildcards.beam == "1" else f"beam {wildcards.beam}"
    return quoted_json({"decoding": f"CTranslate2 {decoding}", "compute_type": wildcards.quant,
                        "beam_size": int(wildcards.beam)})
