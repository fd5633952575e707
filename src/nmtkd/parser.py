"""The `nmtkd` argument parser: one sub-command per pipeline step, path arguments with roles."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, NoReturn

from nmtkd.pathargs import INPUT, LOCATION, OUTPUT, OUTPUT_DIR, STATE_DIR, add_path


class OneLineParser(argparse.ArgumentParser):
    """Usage errors are one line (the README promises one-line errors), exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number (give a finite number)")


def json_object(text: str) -> dict[str, Any]:
    """A JSON object; NaN and Infinity (which Python's json accepts) are refused."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def finite(text: str, convert: type = float, kind: str = "a number") -> Any:
    """`text` as a finite number of type `convert` (nan and inf are refused)."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def finite_float(text: str) -> float:
    return finite(text)


def bounded(text: str, convert: type, minimum: float, kind: str, bound: str) -> Any:
    """`text` as a number of type `convert`, at least `minimum`; else a usage error."""
    value = finite(text, convert, kind)
    if not value >= minimum:
        raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
    return value


def positive_int(text: str) -> int:
    return bounded(text, int, 1, "a whole number", "at least 1")


def non_negative_int(text: str) -> int:
    return bounded(text, int, 0, "a whole number", "0 or more")


def non_negative_float(text: str) -> float:
    return bounded(text, float, 0.0, "a number", "0 or more")


def positive_float(text: str) -> float:
    value = bounded(text, float, 0.0, "a number", "positive")
    if value == 0:
        raise argparse.ArgumentTypeError("must be positive, got 0.0")
    return value


def unit_float(text: str) -> float:
    value = bounded(text, float, 0.0, "a number", "between 0 and 1")
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def coverage(text: str) -> float:
    value = unit_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be above 0 and at most 1, got 0.0")
    return value


def length_ratio(text: str) -> float:
    # longer / shorter is never below 1: a smaller bound would drop every pair
    return bounded(text, float, 1.0, "a number", "at least 1")


def _scoring_arguments(parser: argparse.ArgumentParser) -> None:
    from nmtkd.evaluate import TOKENIZERS

    parser.add_argument("--tokenize", choices=TOKENIZERS, default="13a",
                        help="sacreBLEU's BLEU tokenizer (zh, ja-mecab for unsegmented output)")
    parser.add_argument("--chrf-word-order", type=int, choices=(0, 1, 2), default=0,
                        help="chrF word n-gram order: 2 is chrF++")


def _decode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--beam-size", type=positive_int, default=5)
    parser.add_argument("--nbest", type=positive_int, default=1, help="hypotheses per sentence")
    parser.add_argument("--batch-size", type=positive_int, default=32,
                        help="sentences per batch")
    parser.add_argument("--max-length", type=positive_int, default=256,
                        help="max decoding length")
    parser.add_argument("--max-len-a", type=non_negative_float, default=0.0,
                        help="bound each length-sorted batch to A·|x| + B target tokens (|x|: "
                        "its longest source, in pieces); 0 and 0: --max-length alone")
    parser.add_argument("--max-len-b", type=non_negative_int, default=0)
    parser.add_argument("--length-penalty", type=finite_float, default=1.0)
    parser.add_argument("--threads", type=positive_int, default=1, help="total CPU threads")
    parser.add_argument("--inter-threads", type=positive_int, default=1,
                        help="parallel batches (the rest of --threads goes to each batch)")
    parser.add_argument("--compute-type", default="default",
                        help="CTranslate2 compute type (default: as exported)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])


def _knn_store_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    add_path(parser, "--knn-datastore", INPUT, required=required,
             help="kNN-MT (--backend torch): the model's datastore (nmtkd datastore)")
    add_path(parser, "--knn-index", INPUT, required=required,
             help="the datastore's index (nmtkd knn-index)")


def _knn_decode_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    """kNN-MT's options (defaults: the reference's IWSLT'14 values)."""
    _knn_store_arguments(parser, required)
    parser.add_argument("--knn-k", type=positive_int, help="neighbours per step (default 8)")
    parser.add_argument("--knn-lambda", type=unit_float,
                        help="weight of the kNN distribution (default 0.3)")
    parser.add_argument("--knn-temperature", type=positive_float,
                        help="T of softmax(−d/T) (default 100)")
    add_path(parser, "--knn-settings", INPUT,
             help="k, λ and T from a tuning result (nmtkd knn-tune), instead of the three above")


def _data_commands(command) -> None:
    p = command("fetch", "Fetch a parallel dataset (path, URL via mirror, or "
                "sacrebleu:<testset>)")
    add_path(p, "--src", LOCATION, required=True, help="source location")
    add_path(p, "--tgt", LOCATION, required=True, help="target location")
    p.add_argument("--src-sha256")
    p.add_argument("--tgt-sha256")
    p.add_argument("--mirror", help="local mirror directory (NMTKD_DATA_MIRROR overrides)")
    p.add_argument("--langpair", help="e.g. en-de, for sacrebleu: locations")
    add_path(p, "--out-src", OUTPUT, required=True)
    add_path(p, "--out-tgt", OUTPUT, required=True)

    p = command("clean", "Clean a parallel corpus (streaming) with per-reason counts")
    add_path(p, "--src", INPUT, required=True)
    add_path(p, "--tgt", INPUT, required=True)
    add_path(p, "--out-src", OUTPUT, required=True)
    add_path(p, "--out-tgt", OUTPUT, required=True)
    add_path(p, "--report", OUTPUT, required=True, help="JSON file with the drop counts")
    p.add_argument("--max-tokens", type=positive_int, default=100)
    p.add_argument("--max-ratio", type=length_ratio, default=3.0,
                   help="longest allowed longer/shorter length ratio")
    p.add_argument("--drop-src-equals-tgt", action="store_true")
    p.add_argument("--keep-duplicates", action="store_true")

    p = command("spm-train", "Train the joint SentencePiece (unigram) model")
    add_path(p, "--inputs", INPUT, nargs="+", required=True)
    add_path(p, "--model", OUTPUT, required=True,
             help="output .model path (the .vocab is written beside it)")
    p.add_argument("--vocab-size", type=positive_int, default=8000)
    p.add_argument("--sample-size", type=positive_int, default=1_000_000)
    p.add_argument("--character-coverage", type=coverage, default=1.0,
                   help="share of characters the vocabulary covers, in (0, 1]")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=positive_int, default=1)

    p = command("spm-encode", "Encode a text file into SentencePiece pieces")
    add_path(p, "--model", INPUT, required=True)
    add_path(p, "--input", INPUT, required=True)
    add_path(p, "--output", OUTPUT, required=True)

    p = command("split", "Split a text file into contiguous chunks (scatter)")
    add_path(p, "--input", INPUT, required=True)
    add_path(p, "--outputs", OUTPUT, nargs="+", required=True)

    p = command("gather", "Concatenate chunk outputs in order (gather)")
    add_path(p, "--inputs", INPUT, nargs="+", required=True)
    add_path(p, "--output", OUTPUT, required=True)
    add_path(p, "--expected", INPUT, help="file whose line count the output must have")
    add_path(p, "--nbest-inputs", INPUT, nargs="*", default=[])
    add_path(p, "--nbest-output", OUTPUT)


def _train_command(command) -> None:
    p = command("train", "Train a Transformer (resumes from --workdir after a kill)")
    add_path(p, "--train-src", INPUT, required=True, help="SentencePiece-encoded source")
    add_path(p, "--train-tgt", INPUT, required=True)
    add_path(p, "--valid-src", INPUT, required=True, help="SentencePiece-encoded source")
    add_path(p, "--valid-tgt", INPUT, required=True)
    add_path(p, "--valid-ref", INPUT, required=True, help="raw validation references for BLEU")
    add_path(p, "--spm", INPUT, required=True)
    p.add_argument("--settings", type=json_object, default={},
                   help='JSON: {"model": {preset fields}, "training": {trainer fields}}')
    add_path(p, "--workdir", STATE_DIR, required=True,
             help="resumable state and checkpoints (a new or empty folder, or an earlier "
             "--workdir of nmtkd train)")
    add_path(p, "--output", OUTPUT, required=True, help="final model checkpoint")
    add_path(p, "--summary", OUTPUT, required=True, help="JSON training summary")
    p.add_argument("--threads", type=non_negative_int, default=0,
                   help="CPU threads in all, split over processes (0: torch's default)")
    p.add_argument("--nproc-per-node", type=positive_int, default=1,
                   help="data-parallel processes (torchrun + DDP): one per GPU, or CPU workers")
    add_path(p, "--init", INPUT, help="start from this model checkpoint (fine-tuning)")
    add_path(p, "--teacher", INPUT, help="the teacher's checkpoint, for a loss that runs it")
    add_path(p, "--teacher-signals", INPUT,
             help="the teacher's top-k on the training data (nmtkd teacher-signals), for a "
             "loss that reads them")
    add_path(p, "--knn-targets", INPUT,
             help="each training token's datastore neighbours (nmtkd knn-targets), for kNN-KD")
    p.add_argument("--gpus", type=non_negative_int, default=0,
                   help="GPUs this job may use: claims free ones (file locks) unless the "
                   "scheduler already restricted CUDA_VISIBLE_DEVICES")


def _model_over_corpus_arguments(parser: argparse.ArgumentParser, model_help: str) -> None:
    """A torch model teacher-forced over an encoded training corpus, in batches (the
    arguments of `nmtkd.training_job.model_over_corpus` and its batching)."""
    add_path(parser, "--model", INPUT, required=True, help=model_help)
    add_path(parser, "--train-src", INPUT, required=True, help="SentencePiece-encoded source")
    add_path(parser, "--train-tgt", INPUT, required=True)
    add_path(parser, "--spm", INPUT, required=True)
    parser.add_argument("--max-tokens", type=positive_int, default=2500,
                        help="padded tokens per batch")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=non_negative_int, default=0,
                        help="CPU threads (0: torch's default)")


def _model_commands(command) -> None:
    p = command("teacher-signals", "Run the teacher over a training corpus (teacher forcing) "
                "and store its top-k ids and logits per target token, memory-mapped")
    _model_over_corpus_arguments(p, "the teacher's torch checkpoint")
    p.add_argument("--k", type=positive_int, required=True, help="logits kept per token")
    add_path(p, "--output", OUTPUT_DIR, required=True,
             help="signals directory (replaces only an earlier output of this command)")

    p = command("export", "Export a checkpoint to a CTranslate2 model directory")
    add_path(p, "--checkpoint", INPUT, required=True)
    add_path(p, "--spm", INPUT, required=True)
    add_path(p, "--output", OUTPUT_DIR, required=True,
             help="model directory (replaces only an earlier export)")
    p.add_argument("--quantization", default="float32")

    p = command("corpus", "Build a training corpus: (source, target) text file pairs, "
                "concatenated in the order given, SentencePiece-encoded")
    add_path(p, "--sources", INPUT, nargs="+", required=True, help="source side of each pair")
    add_path(p, "--targets", INPUT, nargs="+", required=True,
             help="target side of each pair (as many as --sources)")
    add_path(p, "--spm", INPUT, required=True)
    add_path(p, "--out-src", OUTPUT, required=True)
    add_path(p, "--out-tgt", OUTPUT, required=True)

    p = command("expand-nbest", "Pair each source with its first N n-best candidates (the "
                "source repeated once per candidate): e.g. the teacher's 2-best as a corpus")
    add_path(p, "--nbest", INPUT, required=True, help="n-best TSV (id, rank, score, text)")
    add_path(p, "--source", INPUT, required=True)
    p.add_argument("--count", type=positive_int, default=2, help="candidates per source")
    add_path(p, "--out-src", OUTPUT, required=True)
    add_path(p, "--out-tgt", OUTPUT, required=True)


def _knn_commands(command) -> None:
    from nmtkd.model import DECODER_STATES

    p = command("datastore", "Build a kNN-MT datastore: a model's decoder state (key) and the "
                "gold next token (value) at every target position of a corpus, memory-mapped")
    _model_over_corpus_arguments(p, "the model's torch checkpoint")
    p.add_argument("--state", choices=DECODER_STATES, default="final",
                   help="the key: the decoder output after the final norm (kNN-KD's code), or "
                   "the normalised input of the last feed-forward block (kNN-MT's)")
    add_path(p, "--output", OUTPUT_DIR, required=True, help="datastore directory")

    p = command("knn-index", "Build the faiss index of a datastore's keys")
    add_path(p, "--datastore", INPUT, required=True)
    p.add_argument("--settings", type=json_object, default={},
                   help='JSON: {"type": "flat" | "ivfpq", "centroids", "code_size", "nprobe", '
                   '"train_sample", "seed"}')
    p.add_argument("--threads", type=non_negative_int, default=0)
    add_path(p, "--output", OUTPUT_DIR, required=True, help="index directory")

    p = command("knn-targets", "Search every datastore entry's k nearest neighbours once and "
                "store them (kNN-KD's soft targets, in the teacher signals' layout)")
    add_path(p, "--datastore", INPUT, required=True)
    add_path(p, "--index", INPUT, required=True)
    p.add_argument("--k", type=positive_int, default=64, help="neighbours kept per token")
    p.add_argument("--exclude-self", action="store_true",
                   help="drop each token's own entry (the reference keeps it)")
    p.add_argument("--threads", type=non_negative_int, default=0)
    add_path(p, "--output", OUTPUT_DIR, required=True, help="kNN targets directory")


def _knn_tune_command(command) -> None:
    from nmtkd.evaluate import TOKENIZERS

    p = command("knn-tune", "Choose kNN-MT's k, λ and T on a validation set: decode it at each "
                "point of a grid (and at λ = 0) and keep the best BLEU")
    add_path(p, "--model", INPUT, required=True, help="the datastore model's torch checkpoint")
    add_path(p, "--spm", INPUT, required=True)
    add_path(p, "--input", INPUT, required=True, help="validation source")
    add_path(p, "--references", INPUT, required=True, help="validation references")
    add_path(p, "--output", OUTPUT, required=True, help="JSON: the best point and the grid")
    p.add_argument("--grid", type=json_object, required=True,
                   help='JSON: {"k": [...], "lambda": [...], "temperature": [...]}')
    p.add_argument("--tokenize", choices=TOKENIZERS, default="13a",
                   help="sacreBLEU's BLEU tokenizer")
    _decode_arguments(p)
    _knn_store_arguments(p, required=True)


def _decode_commands(command) -> None:
    p = command("translate", "Translate a file with beam search: CTranslate2, or the project's "
                "torch search on a checkpoint")
    add_path(p, "--model", INPUT, required=True,
             help="CTranslate2 model directory (a torch checkpoint with --backend torch)")
    p.add_argument("--backend", default="ctranslate2", choices=["ctranslate2", "torch"])
    add_path(p, "--spm", INPUT, help="SentencePiece model (--backend torch)")
    add_path(p, "--input", INPUT, required=True)
    add_path(p, "--output", OUTPUT, required=True)
    add_path(p, "--nbest-output", OUTPUT, help="TSV: sentence id, rank, score, text "
             "(required with --nbest > 1)")
    _decode_arguments(p)
    _knn_decode_arguments(p, required=False)

    p = command("select", "Seq-Inter: pick from each n-best list the candidate closest to "
                "the reference")
    add_path(p, "--nbest", INPUT, required=True, help="TSV from translate --nbest-output")
    add_path(p, "--references", INPUT, required=True)
    add_path(p, "--output", OUTPUT, required=True)
    p.add_argument("--metric", default="bleu", choices=["bleu", "chrf"])

    p = command("speed", "Measure CTranslate2 decoding speed on a file: a warm-up pass, then "
                "the median of interleaved timed runs on a fixed subset")
    add_path(p, "--model", INPUT, help="a CTranslate2 model directory")
    p.add_argument("--models", type=json_object, help='instead of --model, several measured '
                   'together: {"name": {"model": DIR, "compute_type": TYPE}, ...}')
    add_path(p, "--input", INPUT, required=True)
    add_path(p, "--output", OUTPUT, required=True, help="JSON result")
    p.add_argument("--repeats", type=positive_int, default=3,
                   help="timed rounds (each times every model once); the median counts")
    p.add_argument("--sentences", type=positive_int, default=500,
                   help="the first N sentences of --input are translated")
    _decode_arguments(p)

    p = command("knn-speed", "Measure kNN-MT's decoding speed against the same model without "
                "retrieval (torch beam search, interleaved timed runs)")
    add_path(p, "--model", INPUT, required=True, help="the datastore model's torch checkpoint")
    add_path(p, "--spm", INPUT, required=True)
    add_path(p, "--input", INPUT, required=True)
    add_path(p, "--output", OUTPUT, required=True, help="JSON result")
    p.add_argument("--repeats", type=positive_int, default=3)
    p.add_argument("--sentences", type=positive_int, default=500)
    _decode_arguments(p)
    _knn_decode_arguments(p, required=True)


def _report_commands(command) -> None:
    p = command("evaluate", "Score hypotheses with sacreBLEU (BLEU, chrF, TER)")
    add_path(p, "--hypotheses", INPUT, required=True)
    add_path(p, "--references", INPUT, required=True)
    add_path(p, "--source", INPUT, help="the source: adds the share of runaway outputs")
    add_path(p, "--output", OUTPUT, required=True, help="JSON result")
    p.add_argument("--model-name", required=True)
    p.add_argument("--testset", required=True)
    p.add_argument("--metadata", type=json_object, help="extra JSON fields for the result")
    _scoring_arguments(p)

    p = command("significance", "Paired significance of a system against a baseline on one "
                "test set: sacreBLEU's paired bootstrap and approximate randomisation, BLEU and "
                "chrF; several runs per side are pooled")
    add_path(p, "--system", INPUT, nargs="+", required=True, help="the system's outputs, a "
             "file per run (seed)")
    add_path(p, "--baseline", INPUT, nargs="+", required=True, help="the baseline's outputs")
    add_path(p, "--references", INPUT, required=True)
    add_path(p, "--output", OUTPUT, required=True, help="JSON result")
    p.add_argument("--bootstrap-samples", type=non_negative_int, default=1000)
    p.add_argument("--ar-trials", type=non_negative_int, default=1000)
    p.add_argument("--metadata", type=json_object, help="extra JSON fields for the result")
    _scoring_arguments(p)

    p = command("agreement", "Top-1 Agreement with the teacher and reference perplexity, "
                "teacher-forced on a test set")
    add_path(p, "--model", INPUT, required=True, help="torch checkpoint")
    add_path(p, "--teacher", INPUT, required=True, help="torch checkpoint")
    add_path(p, "--spm", INPUT, required=True)
    add_path(p, "--src", INPUT, required=True)
    add_path(p, "--ref", INPUT, required=True)
    add_path(p, "--output", OUTPUT, required=True, help="JSON result")
    p.add_argument("--threads", type=non_negative_int, default=0, help="0: torch's default")

    p = command("report", "Write the Markdown table of evaluation results")
    add_path(p, "--inputs", INPUT, nargs="+", required=True)
    add_path(p, "--agreements", INPUT, nargs="*", default=[],
             help="the teacher's `nmtkd agreement` files (teacher-forced top-1 = reference), "
             "e.g. on its training data and each test set")
    add_path(p, "--output", OUTPUT, required=True)

    p = command("compare", "Write the comparison tables (Markdown, CSV, LaTeX)")
    add_path(p, "--config", INPUT, help="a run's saved config (results/<experiment>/"
             "config.yaml): the tables of its plan")
    p.add_argument("--study", help="with --config: the study whose tables to write (default: "
                   "the first selected)")
    p.add_argument("--manifest", help="instead of --config: JSON (or a JSON file) naming each "
                   "model's result files")
    add_path(p, "--markdown", OUTPUT, required=True)
    add_path(p, "--csv", OUTPUT, required=True)
    add_path(p, "--latex", OUTPUT, required=True)
    add_path(p, "--html", OUTPUT, help="the same tables as an HTML page (for the report)")

    p = command("plots", "Draw the comparison's plots (PNG or SVG by file name): "
                "bleu_speed_float32, bleu_speed_int8, bleu_size, validation_curves, "
                "agreement_bleu")
    add_path(p, "--config", INPUT, required=True, help="the run's saved config (its models' "
             "training summaries)")
    p.add_argument("--study", help="the study to draw (default: the first selected)")
    add_path(p, "--comparison", INPUT, required=True, help="the study's tables/<study>.csv")
    add_path(p, "--outputs", OUTPUT, nargs="+", required=True, help="<plot>.png or <plot>.svg")

    p = command("check-config", "Check config files as the workflow reads them (the first, "
                "then each on top) and make every check the workflow makes: YAML syntax and "
                "duplicate keys with line numbers, data and study ownership, finite numbers, "
                "experiment name, schema, and the plan (presets, losses, students, studies)")
    add_path(p, "files", INPUT, nargs="+", metavar="FILE")
    add_path(p, "--schema", INPUT, help="default: schemas/config.schema.yaml here, else the "
             "repository's")

    p = command("write-config", "Save a resolved config (JSON in) as YAML")
    p.add_argument("--json", type=json_object, required=True)
    add_path(p, "--output", OUTPUT, required=True)


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    parser = OneLineParser(prog="nmtkd", description=description)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text)

    for group in (_data_commands, _train_command, _model_commands, _knn_commands,
                  _knn_tune_command, _decode_commands, _report_commands):
        group(command)
    return parser
