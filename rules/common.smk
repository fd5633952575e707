# The adapter between Snakemake and the resolved plan (nmtkd.plan): it reads the config files,
# builds the plan (every config check lives there) and exposes names and input functions to
# the rules. Nothing here checks or decides anything of its own.
import json
import re
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

from nmtkd.configfiles import read_workflow_config
from nmtkd.errors import NmtkdError
from nmtkd.plan import TEACHER, build_plan

SCHEMA = Path(workflow.basedir) / "schemas" / "config.schema.yaml"


def stop(message):
    """A config problem: one line, no traceback, nothing run."""
    print(message, file=sys.stderr)
    sys.exit(1)


def load_config():
    """config.yaml with each --configfile on top (a file that sets `data` owns it), then
    --config values; checked against the schema (which fills in defaults), then planned."""
    try:
        resolved = read_workflow_config("config.yaml" if Path("config.yaml").exists() else None,
                                        workflow.overwrite_configfiles,
                                        workflow.config_settings.config, SCHEMA)
        config.clear()
        config.update(resolved)
        validate(config, schema=str(SCHEMA))
        return build_plan(config)
    except NmtkdError as error:
        stop(str(error))


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
STUDENTS = list(PLAN.students)
MODELS = PLAN.models
VARIANTS = PLAN.variants


def alternatives(names):
    return "|".join(re.escape(str(name)) for name in names) or "(?!)"


wildcard_constraints:
    split=alternatives(SPLITS),
    testset=alternatives(TESTSETS),
    lang=alternatives([SRC, TGT]),
    model=alternatives(MODELS),
    student=alternatives(STUDENTS),
    variant=alternatives(VARIANTS),
    corpus=alternatives(["gold", *VARIANTS]),
    k="[0-9]+",
    beam=alternatives(BEAMS),
    quant=alternatives(QUANTIZATIONS),
    encoded_split="train|valid",


def quoted(value):
    """A value for the shell: JSON, single-quoted."""
    return shlex.quote(json.dumps(value, sort_keys=True))


def quoted_args(args):
    return " ".join(shlex.quote(str(a)) for a in args)


def resource(model, key):
    return getattr(PLAN.model(model).resources, key)


# ---- input functions and parameters of the rules (wildcards in, plan out) ---------------------
def fetch_arguments(wildcards):
    return quoted_args(PLAN.fetch_arguments(wildcards.split))


def encode_input(wildcards):
    return PLAN.encode_input(wildcards.encoded_split, wildcards.lang)


def torch_checkpoint(wildcards):
    return PLAN.torch_checkpoint(wildcards.model)


def ct2_model(wildcards):
    return PLAN.ct2_model(wildcards.model, wildcards.quant)


def compute_type(wildcards):
    return PLAN.compute_type(wildcards.model, wildcards.quant)


def corpus_inputs(wildcards):
    return PLAN.corpus_inputs(wildcards.variant)


def corpus_arguments(wildcards):
    return quoted_args(PLAN.corpus_arguments(wildcards.variant))


def student_inputs(wildcards):
    return PLAN.training_inputs(wildcards.student)


def student_settings(wildcards):
    return quoted(PLAN.train_settings(wildcards.student))


def student_optional_arguments(wildcards):
    """--init, --teacher, --teacher-signals: as the student and its criterion need."""
    return quoted_args(PLAN.training_arguments(wildcards.student))


def signals_inputs(wildcards):
    return {"model": PLAN.torch_checkpoint(TEACHER), "spm": PLAN.spm_model(),
            **PLAN.encoded_corpus(wildcards.corpus)}


def student_resource(key):
    """An input function for one resource of the `{student}` wildcard's model."""
    return lambda wildcards: resource(wildcards.student, key)


def student_processes(wildcards):
    return PLAN.students[wildcards.student].processes


def student_gpus(wildcards):
    return PLAN.students[wildcards.student].gpus


def evaluation_metadata(wildcards):
    decoding = "greedy" if wildcards.beam == "1" else f"beam {wildcards.beam}"
    return quoted({"decoding": f"CTranslate2 {decoding}", "compute_type": wildcards.quant,
                   "beam_size": int(wildcards.beam)})
