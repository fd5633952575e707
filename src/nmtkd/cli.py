"""Command-line interface: one sub-command per pipeline step, each usable without Snakemake."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from nmtkd.errors import NmtkdError

log = logging.getLogger("nmtkd")


def _json_arg(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


# ---- data ------------------------------------------------------------------------------------
def cmd_fetch(args: argparse.Namespace) -> None:
    from nmtkd.cleaning import check_parallel
    from nmtkd.importers import fetch, resolve_mirror
    from nmtkd.textio import atomic_path

    mirror = resolve_mirror(args.mirror)
    # Both sides appear together or not at all.
    with atomic_path(args.out_src) as src_tmp, atomic_path(args.out_tgt) as tgt_tmp:
        fetch(args.src, src_tmp, args.src_sha256, mirror, "src", args.langpair)
        fetch(args.tgt, tgt_tmp, args.tgt_sha256, mirror, "tgt", args.langpair)
        count = check_parallel(src_tmp, tgt_tmp)
    log.info("%s, %s: %d sentence pairs", args.out_src, args.out_tgt, count)


def cmd_clean(args: argparse.Namespace) -> None:
    from nmtkd.cleaning import CleaningRules, clean_corpus

    rules = CleaningRules(max_tokens=args.max_tokens, max_length_ratio=args.max_ratio,
                          drop_src_equals_tgt=args.drop_src_equals_tgt,
                          deduplicate=not args.keep_duplicates)
    report = clean_corpus(Path(args.src), Path(args.tgt), Path(args.out_src), Path(args.out_tgt),
                          Path(args.report), rules)
    log.info("kept %d of %d pairs; dropped %s", report["kept"], report["input"],
             report["dropped"])


def cmd_spm_train(args: argparse.Namespace) -> None:
    from nmtkd.spm import train_spm

    train_spm([Path(p) for p in args.inputs], Path(args.model), args.vocab_size,
              args.sample_size, args.seed, args.character_coverage, args.threads)


def cmd_spm_encode(args: argparse.Namespace) -> None:
    from nmtkd.spm import Tokenizer
    from nmtkd.textio import atomic_writer, read_lines

    tokenizer = Tokenizer(args.model)
    lines = read_lines(args.input)
    with atomic_writer(args.output) as handle:
        for pieces in tokenizer.encode_pieces(lines):
            handle.write(" ".join(pieces) + "\n")


# ---- model -----------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> None:
    from nmtkd.distributed import launched_by_torchrun

    if not launched_by_torchrun():
        from nmtkd.gpus import claim_gpus

        claim_gpus(args.gpus)  # before CUDA starts; torchrun's workers inherit the devices
        if args.nproc_per_node > 1:
            relaunch_under_torchrun(args.nproc_per_node)
            return
    train_model(args)


def relaunch_under_torchrun(processes: int) -> None:
    """Run this same command as `processes` workers under torchrun (DDP on one machine)."""
    import subprocess

    argv = sys.argv[1:]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={processes}", "-m", "nmtkd.cli", *argv]
    log.info("launching %d training processes: %s", processes, " ".join(command))
    result = subprocess.run(command)
    if result.returncode != 0:
        raise NmtkdError(f"distributed training failed (exit status {result.returncode}); "
                         "see the workers' messages above")


def train_model(args: argparse.Namespace) -> None:
    from nmtkd.batching import ParallelData
    from nmtkd.distributed import init_distributed, shutdown
    from nmtkd.model import ModelConfig
    from nmtkd.spm import Tokenizer
    from nmtkd.textio import read_lines
    from nmtkd.trainer import TrainConfig, Trainer, resolve_device

    settings = args.settings
    try:
        train_cfg = TrainConfig(**settings.get("training", {}))
        tokenizer = Tokenizer(args.spm)
        model_cfg = ModelConfig(vocab_size=len(tokenizer), **settings.get("model", {}))
    except (TypeError, ValueError) as error:
        raise NmtkdError(f"--settings: {error}") from None
    context = init_distributed(resolve_device(train_cfg.device).type)
    threads = args.threads or train_cfg.threads
    if threads:
        train_cfg.threads = max(1, threads // context.world)
    train = ParallelData.from_piece_files(Path(args.train_src), Path(args.train_tgt), tokenizer,
                                          model_cfg.max_positions)
    valid = ParallelData.from_piece_files(Path(args.valid_src), Path(args.valid_tgt), tokenizer,
                                          model_cfg.max_positions)
    for data in (train, valid):
        if data.skipped:
            log.warning("%s: skipped %d pairs longer than max_positions=%d", data.name,
                        data.skipped, model_cfg.max_positions)
    refs = read_lines(args.valid_ref)
    if len(refs) != len(valid) + valid.skipped:
        raise NmtkdError(f"line counts differ: {args.valid_ref} has {len(refs)} lines, "
                         f"{args.valid_src} has {len(valid) + valid.skipped}")
    init_model, identity = None, {}
    if args.init:
        from nmtkd.checkpoint import load_model

        init_model, _ = load_model(args.init)
        identity["init"] = file_sha256(Path(args.init))
    teacher = train_cfg.loss.get("teacher")
    if isinstance(teacher, str):
        identity["teacher"] = file_sha256(Path(teacher))
    try:
        trainer = Trainer(model_cfg, train_cfg, train, valid, refs, tokenizer,
                          Path(args.workdir), context=context, init_model=init_model,
                          identity=identity)
        trainer.fit()
        summary = trainer.write_outputs(Path(args.output), Path(args.summary))
    finally:
        shutdown()
    if summary:
        log.info("done: %d updates in %.0f s; final model: %s, valid BLEU %.2f",
                 summary["updates"], summary["train_seconds"], summary["final_model"],
                 summary["final_valid"]["valid_bleu"])


def file_sha256(path: Path) -> str:
    import hashlib

    if not path.is_file():
        raise NmtkdError(f"{path}: file not found")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def cmd_corpus(args: argparse.Namespace) -> None:
    from nmtkd.spm import Tokenizer
    from nmtkd.variants import PART_FILES, build_corpus

    files = {name: Path(getattr(args, name)) for name in set(PART_FILES.values())
             if getattr(args, name)}
    pairs = build_corpus(args.parts, Path(args.source), files, Tokenizer(args.spm),
                         Path(args.out_src), Path(args.out_tgt))
    log.info("%s: %d pairs from %s", args.out_src, pairs, " + ".join(args.parts))


def cmd_agreement(args: argparse.Namespace) -> None:
    from nmtkd.agreement import agreement_files

    result = agreement_files(Path(args.model), Path(args.teacher), Path(args.spm),
                             Path(args.src), Path(args.ref), Path(args.output), args.threads)
    log.info("top-1 agreement %.2f%% over %d tokens; reference perplexity %.2f",
             result["top1_agreement"], result["tokens"], result["ppl"])


def cmd_speed(args: argparse.Namespace) -> None:
    from nmtkd.speed import measure_speed

    result = measure_speed(Path(args.model), Path(args.input), Path(args.output),
                           _decode_options(args), args.repeats)
    log.info("%.0f target tokens/s, %.1f sentences/s", result["tokens_per_second"],
             result["sentences_per_second"])


def cmd_compare(args: argparse.Namespace) -> None:
    from nmtkd.compare import write_comparison

    text = args.manifest
    if not text.lstrip().startswith("{"):  # a file name
        try:
            text = Path(text).read_text()
        except OSError as error:
            raise NmtkdError(f"--manifest: cannot read {args.manifest} ({error})") from None
    try:
        manifest = _json_arg(text)
    except argparse.ArgumentTypeError as error:
        raise NmtkdError(f"--manifest: {error}") from None
    write_comparison(manifest, Path(args.markdown), Path(args.csv), Path(args.latex))
    log.info("wrote %s, %s, %s", args.markdown, args.csv, args.latex)


def cmd_export(args: argparse.Namespace) -> None:
    from nmtkd.export import export_model

    export_model(Path(args.checkpoint), Path(args.spm), Path(args.output), args.quantization)


def _decode_options(args: argparse.Namespace) -> Any:
    from nmtkd.translate import DecodeOptions

    return DecodeOptions(beam_size=args.beam_size, nbest=args.nbest, batch_size=args.batch_size,
                         max_length=args.max_length, length_penalty=args.length_penalty,
                         threads=args.threads, inter_threads=args.inter_threads,
                         compute_type=args.compute_type, device=args.device)


def cmd_translate(args: argparse.Namespace) -> None:
    from nmtkd.translate import translate_file

    translate_file(Path(args.model), Path(args.input), Path(args.output), _decode_options(args),
                   Path(args.nbest_output) if args.nbest_output else None)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from nmtkd.evaluate import evaluate_files

    metadata = {"model": args.model_name, "testset": args.testset, **(args.metadata or {})}
    result = evaluate_files(Path(args.hypotheses), Path(args.references), Path(args.output),
                            metadata)
    log.info("%s on %s: BLEU %.2f chrF %.2f", args.model_name, args.testset, result["bleu"],
             result["chrf"])


def cmd_report(args: argparse.Namespace) -> None:
    from nmtkd.report import write_teacher_table

    write_teacher_table([Path(p) for p in args.inputs], Path(args.output))


def cmd_select(args: argparse.Namespace) -> None:
    from nmtkd.selection import select_file

    chosen = select_file(Path(args.nbest), Path(args.references), Path(args.output), args.metric)
    top = sum(c.rank == 0 for c in chosen)
    log.info("selected %d targets; %d (%.1f%%) are the top beam hypothesis", len(chosen), top,
             100 * top / max(1, len(chosen)))


def cmd_split(args: argparse.Namespace) -> None:
    from nmtkd.chunks import split_file

    sizes = split_file(Path(args.input), [Path(p) for p in args.outputs])
    log.info("split %s into %d chunks of %s lines", args.input, len(sizes), sizes)


def cmd_gather(args: argparse.Namespace) -> None:
    from nmtkd.chunks import gather_files, gather_nbest

    if args.nbest_inputs and not args.nbest_output:
        raise NmtkdError("--nbest-inputs needs --nbest-output")
    expected = Path(args.expected) if args.expected else None
    count = gather_files([Path(p) for p in args.inputs], Path(args.output), expected)
    if args.nbest_inputs:
        # gather_files has already checked `count` against --expected
        gather_nbest([Path(p) for p in args.nbest_inputs], Path(args.nbest_output), count)
    log.info("gathered %d lines into %s", count, args.output)


def cmd_write_config(args: argparse.Namespace) -> None:
    import yaml

    from nmtkd.textio import atomic_writer

    with atomic_writer(args.output) as handle:
        yaml.safe_dump(args.json, handle, sort_keys=False, allow_unicode=True)


# ---- parser ----------------------------------------------------------------------------------
def _add_decode_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--nbest", type=int, default=1, help="hypotheses per sentence")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per batch")
    parser.add_argument("--max-length", type=int, default=256, help="max decoding length")
    parser.add_argument("--length-penalty", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1, help="total CPU threads")
    parser.add_argument("--inter-threads", type=int, default=1,
                        help="parallel batches (the rest of --threads goes to each batch)")
    parser.add_argument("--compute-type", default="default",
                        help="CTranslate2 compute type (default: as exported)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nmtkd", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    p = command("fetch", cmd_fetch,
                "Fetch a parallel dataset (path, URL via mirror, or sacrebleu:<testset>)")
    p.add_argument("--src", required=True, help="source location")
    p.add_argument("--tgt", required=True, help="target location")
    p.add_argument("--src-sha256")
    p.add_argument("--tgt-sha256")
    p.add_argument("--mirror", help="local mirror directory (NMTKD_DATA_MIRROR overrides)")
    p.add_argument("--langpair", help="e.g. en-de, for sacrebleu: locations")
    p.add_argument("--out-src", required=True)
    p.add_argument("--out-tgt", required=True)

    p = command("clean", cmd_clean, "Clean a parallel corpus (streaming) with per-reason counts")
    p.add_argument("--src", required=True)
    p.add_argument("--tgt", required=True)
    p.add_argument("--out-src", required=True)
    p.add_argument("--out-tgt", required=True)
    p.add_argument("--report", required=True, help="JSON file with the drop counts")
    p.add_argument("--max-tokens", type=int, default=100)
    p.add_argument("--max-ratio", type=float, default=3.0)
    p.add_argument("--drop-src-equals-tgt", action="store_true")
    p.add_argument("--keep-duplicates", action="store_true")

    p = command("spm-train", cmd_spm_train, "Train the joint SentencePiece (unigram) model")
    p.add_argument("--inputs", nargs="+", required=True)
    p.add_argument("--model", required=True, help="output .model path")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--sample-size", type=int, default=1_000_000)
    p.add_argument("--character-coverage", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)

    p = command("spm-encode", cmd_spm_encode, "Encode a text file into SentencePiece pieces")
    p.add_argument("--model", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)

    p = command("train", cmd_train, "Train a Transformer (resumes from --workdir after a kill)")
    p.add_argument("--train-src", required=True, help="SentencePiece-encoded source")
    p.add_argument("--train-tgt", required=True)
    p.add_argument("--valid-src", required=True, help="SentencePiece-encoded source")
    p.add_argument("--valid-tgt", required=True)
    p.add_argument("--valid-ref", required=True, help="raw validation references for BLEU")
    p.add_argument("--spm", required=True)
    p.add_argument("--settings", type=_json_arg, default={},
                   help='JSON: {"model": {preset fields}, "training": {trainer fields}}')
    p.add_argument("--workdir", required=True, help="resumable state and checkpoints")
    p.add_argument("--output", required=True, help="final model checkpoint")
    p.add_argument("--summary", required=True, help="JSON training summary")
    p.add_argument("--threads", type=int, default=0, help="CPU threads in all (split over "
                   "processes)")
    p.add_argument("--nproc-per-node", type=int, default=1,
                   help="data-parallel processes (torchrun + DDP): one per GPU, or CPU workers")
    p.add_argument("--init", help="start from this model checkpoint (fine-tuning)")
    p.add_argument("--gpus", type=int, default=0,
                   help="GPUs this job may use: claims free ones (file locks) unless the "
                   "scheduler already restricted CUDA_VISIBLE_DEVICES")

    p = command("export", cmd_export, "Export a checkpoint to a CTranslate2 model directory")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--spm", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--quantization", default="float32")

    p = command("translate", cmd_translate, "Translate a file with CTranslate2 beam search")
    p.add_argument("--model", required=True, help="CTranslate2 model directory")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--nbest-output", help="TSV: sentence id, rank, score, text")
    _add_decode_arguments(p)

    p = command("evaluate", cmd_evaluate, "Score hypotheses with sacreBLEU (BLEU, chrF, TER)")
    p.add_argument("--hypotheses", required=True)
    p.add_argument("--references", required=True)
    p.add_argument("--output", required=True, help="JSON result")
    p.add_argument("--model-name", required=True)
    p.add_argument("--testset", required=True)
    p.add_argument("--metadata", type=_json_arg, help="extra JSON fields for the result")

    p = command("report", cmd_report, "Write the Markdown table of evaluation results")
    p.add_argument("--inputs", nargs="+", required=True)
    p.add_argument("--output", required=True)

    p = command("select", cmd_select,
                "Seq-Inter: pick from each n-best list the candidate closest to the reference")
    p.add_argument("--nbest", required=True, help="TSV from translate --nbest-output")
    p.add_argument("--references", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--metric", default="bleu", choices=["bleu", "chrf"])

    p = command("split", cmd_split, "Split a text file into contiguous chunks (scatter)")
    p.add_argument("--input", required=True)
    p.add_argument("--outputs", nargs="+", required=True)

    p = command("gather", cmd_gather, "Concatenate chunk outputs in order (gather)")
    p.add_argument("--inputs", nargs="+", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--expected", help="file whose line count the output must have")
    p.add_argument("--nbest-inputs", nargs="*", default=[])
    p.add_argument("--nbest-output")

    p = command("corpus", cmd_corpus, "Build a student's training corpus from gold and "
                "distilled targets (concatenated in the order given), SentencePiece-encoded")
    p.add_argument("--parts", nargs="+", required=True,
                   help="gold, seqkd, seqinter, best2 (in this order in the output)")
    p.add_argument("--source", required=True, help="the cleaned training source")
    p.add_argument("--gold", help="the cleaned training target")
    p.add_argument("--seqkd", help="the teacher's top hypotheses")
    p.add_argument("--seqinter", help="the Seq-Inter selection")
    p.add_argument("--nbest", help="the teacher's n-best TSV")
    p.add_argument("--spm", required=True)
    p.add_argument("--out-src", required=True)
    p.add_argument("--out-tgt", required=True)

    p = command("agreement", cmd_agreement, "Top-1 Agreement with the teacher and reference "
                "perplexity, teacher-forced on a test set")
    p.add_argument("--model", required=True, help="torch checkpoint")
    p.add_argument("--teacher", required=True, help="torch checkpoint")
    p.add_argument("--spm", required=True)
    p.add_argument("--src", required=True)
    p.add_argument("--ref", required=True)
    p.add_argument("--output", required=True, help="JSON result")
    p.add_argument("--threads", type=int, default=0)

    p = command("speed", cmd_speed, "Measure CTranslate2 decoding speed on a file")
    p.add_argument("--model", required=True, help="CTranslate2 model directory")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True, help="JSON result")
    p.add_argument("--repeats", type=int, default=1, help="timed runs; the fastest counts")
    _add_decode_arguments(p)

    p = command("compare", cmd_compare, "Write the comparison tables (Markdown, CSV, LaTeX)")
    p.add_argument("--manifest", required=True, help="JSON (or a JSON file) naming each "
                   "model's result files")
    p.add_argument("--markdown", required=True)
    p.add_argument("--csv", required=True)
    p.add_argument("--latex", required=True)

    p = command("write-config", cmd_write_config, "Save a resolved config (JSON in) as YAML")
    p.add_argument("--json", type=_json_arg, required=True)
    p.add_argument("--output", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.handler(args)
    except NmtkdError as error:
        print(f"nmtkd {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
