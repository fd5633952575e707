# The adapter between Snakemake and the resolved plan (nmtkd.plan): it reads the config files,
# builds the plan (every config check lives there) and exposes names and input functions to
# the rules. Nothing here checks or decides anything of its own.
import json
import re
import shlex
import sys
from pathlib import Path

from nmtkd.errors import NmtkdError
from nmtkd.plan import KNN_MT, read_workflow_plan

SCHEMA = Path(workflow.basedir) / "schemas" / "config.schema.yaml"


def stop(message):
    """A config problem: one line, no traceback, nothing run."""
    print(message, file=sys.stderr)
    sys.exit(1)


def load_config():
    """config.yaml with each --configfile on top, then --config values, checked, completed
    with the schema's defaults and planned as `nmtkd check-config` does; `config` becomes the
    resolved config."""
    try:
        plan = read_workflow_plan("config.yaml" if Path("config.yaml").exists() else None,
                                  workflow.overwrite_configfiles,
                                  workflow.config_settings.config, SCHEMA)
    except NmtkdError as error:
        stop(str(error))
    config.clear()
    config.update(plan.config)
    return plan


PLAN = load_config()
EXPERIMENT = PLAN.experiment
RESULTS = PLAN.results
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
SRC, TGT = PLAN.src, PLAN.tgt
TESTSETS = PLAN.testsets
SPLITS = ["train", "valid", *TESTSETS]
QUANTIZATIONS = config["export"]["quantizations"]
EVAL = config["evaluation"]
DISTILL = config["distill"]
SPEED = EVAL["speed"]
SPEED_TESTSET = PLAN.speed_testset
BEAM = PLAN.beam
BEAMS = PLAN.beams
MODELS = PLAN.models
CORPORA = PLAN.corpora


def alternatives(names):
    return "|".join(re.escape(str(name)) for name in names) or "(?!)"


wildcard_constraints:
    split=alternatives(SPLITS),
    testset=alternatives(TESTSETS),
    lang=alternatives([SRC, TGT]),
    model=alternatives(MODELS + ([KNN_MT] if PLAN.knn_mt_studied else [])),
    teacher=alternatives(PLAN.teachers),
    preset=alternatives(PLAN.presets),
    study=alternatives(PLAN.studies),
    student=alternatives({student for student, _ in PLAN.tested_pairs()}),
    baseline=alternatives({baseline for _, baseline in PLAN.tested_pairs()}),
    corpus=alternatives(["gold", *CORPORA]),
    k="[0-9]+",
    beam=alternatives(BEAMS),
    quant=alternatives(QUANTIZATIONS),
    encoded_split="train|valid",
    knn_model=re.escape(PLAN.knn_model),
    targets=r"targets\.k[0-9]+(\.noself)?",


def quoted(value):
    """A value for the shell: JSON, single-quoted."""
    return shlex.quote(json.dumps(value, sort_keys=True))


def quoted_args(args):
    return " ".join(shlex.quote(str(a)) for a in args)


# ---- input functions and parameters of the rules: wildcards in, plan out ---------------------
def from_plan(method, *names, then=None):
    """An input function: PLAN.<method>(<the named wildcards' values>), then `then`."""

    def function(wildcards):
        value = getattr(PLAN, method)(*(getattr(wildcards, name) for name in names))
        return then(value) if then else value

    return function


def of_model(wildcard, attribute, key=None):
    """An input function: an attribute (or one resource) of the wildcard's model."""

    def function(wildcards):
        value = getattr(PLAN.model(getattr(wildcards, wildcard)), attribute)
        return getattr(value, key) if key else value

    return function


fetch_arguments = from_plan("fetch_arguments", "split", then=quoted_args)
encode_input = from_plan("encode_input", "encoded_split", "lang")
torch_checkpoint = from_plan("torch_checkpoint", "model")
ct2_model = from_plan("ct2_model", "model", "quant")
evaluation_decoder = lambda wildcards: PLAN.decoder_inputs(wildcards.model, wildcards.quant,
                                                           "evaluation")
evaluation_decoder_arguments = lambda wildcards: quoted_args(
    PLAN.decoder_arguments(wildcards.model, wildcards.quant, "evaluation"))
distill_decoder = lambda wildcards: PLAN.decoder_inputs(wildcards.teacher, "float32", "distill")
distill_decoder_arguments = lambda wildcards: quoted_args(
    PLAN.decoder_arguments(wildcards.teacher, "float32", "distill"))
reference_teacher_checkpoint = lambda wildcards: PLAN.torch_checkpoint(
    PLAN.reference_teacher(wildcards.model))
corpus_inputs = from_plan("corpus_inputs", "corpus")
training_inputs = from_plan("training_inputs", "model")
train_settings = from_plan("train_settings", "model", then=quoted)
# --init, --teacher, --teacher-signals: as the model and its criterion need
optional_training_arguments = from_plan("training_arguments", "model", then=quoted_args)
# teachers first: everything distilled waits for them
training_priority = lambda wildcards: 10 if wildcards.model in PLAN.teachers else 0
model_processes = of_model("model", "processes")
model_gpus = of_model("model", "gpus")
signals_inputs = from_plan("signals_inputs", "teacher", "corpus")
datastore_inputs = from_plan("datastore_inputs", "corpus")
teacher_device = lambda wildcards: PLAN.model(wildcards.teacher).training["device"]
teacher_gpu = lambda wildcards: 1 if teacher_device(wildcards) == "cuda" else 0
significance_inputs = from_plan("significance_inputs", "student", "baseline", "testset")
significance_metadata = from_plan("significance_metadata", "student", "baseline", "testset",
                                  then=quoted)
evaluation_metadata = from_plan("evaluation_metadata", "model", "quant", "beam", then=quoted)
speed_models = from_plan("speed_models", "study", "preset", "quant")
speed_inputs = lambda wildcards: [spec["model"] for spec in speed_models(wildcards).values()]
comparison_inputs = from_plan("comparison_inputs", "study")
study_trainings = lambda wildcards: list(PLAN.training_summaries(wildcards.study).values())
