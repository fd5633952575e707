"""Command-line interface: one sub-command per pipeline step, each usable without Snakemake."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from nmtkd.errors import NmtkdError
from nmtkd.parser import build_parser as _build_parser
from nmtkd.parser import json_object

log = logging.getLogger("nmtkd")


# ---- data ------------------------------------------------------------------------------------
def cmd_fetch(args: argparse.Namespace) -> None:
    from nmtkd.cleaning import check_parallel
    from nmtkd.importers import fetch, resolve_mirror
    from nmtkd.textio import atomic_paths

    mirror = resolve_mirror(args.mirror)
    # Both sides appear together or not at all.
    with atomic_paths([args.out_src, args.out_tgt]) as (src_tmp, tgt_tmp):
        fetch(args.src, src_tmp, args.src_sha256, mirror, "src", args.langpair)
        fetch(args.tgt, tgt_tmp, args.tgt_sha256, mirror, "tgt", args.langpair)
        count = check_parallel(src_tmp, tgt_tmp, (args.src, args.tgt))
    log.info("%s, %s: %d sentence pairs", args.out_src, args.out_tgt, count)


def cmd_clean(args: argparse.Namespace) -> None:
    from nmtkd.cleaning import CleaningRules, clean_corpus
    from nmtkd.textio import atomic_paths

    rules = CleaningRules(max_tokens=args.max_tokens, max_length_ratio=args.max_ratio,
                          drop_src_equals_tgt=args.drop_src_equals_tgt,
                          deduplicate=not args.keep_duplicates)
    with atomic_paths([args.out_src, args.out_tgt, args.report]) as outputs:
        report = clean_corpus(Path(args.src), Path(args.tgt), *outputs, rules)
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
    from nmtkd.training_job import TrainingFiles
    from nmtkd.training_job import train_model as run_training

    def optional(value: str | None) -> Path | None:
        return Path(value) if value else None

    files = TrainingFiles(
        train_src=Path(args.train_src), train_tgt=Path(args.train_tgt),
        valid_src=Path(args.valid_src), valid_tgt=Path(args.valid_tgt),
        valid_ref=Path(args.valid_ref), spm=Path(args.spm), workdir=Path(args.workdir),
        output=Path(args.output), summary=Path(args.summary), init=optional(args.init),
        teacher=optional(args.teacher), teacher_signals=optional(args.teacher_signals),
        knn_targets=optional(args.knn_targets))
    run_training(files, args.settings, args.threads)


def cmd_teacher_signals(args: argparse.Namespace) -> None:
    from nmtkd.training_job import compute_teacher_signals

    meta = compute_teacher_signals(Path(args.model), Path(args.train_src), Path(args.train_tgt),
                                   Path(args.spm), args.k, args.max_tokens, Path(args.output),
                                   args.device, args.threads)
    log.info("%s: top-%d of %d target positions on %d lines (%d lines too long)", args.output,
             meta["k"], meta["positions"], meta["lines"], meta["skipped_lines"])


def cmd_datastore(args: argparse.Namespace) -> None:
    from nmtkd.knn.jobs import build_datastore

    meta = build_datastore(Path(args.model), Path(args.train_src), Path(args.train_tgt),
                           Path(args.spm), args.state, args.max_tokens, Path(args.output),
                           args.device, args.threads)
    log.info("%s: %d entries (%s keys, dimension %d) on %d lines (%d lines too long)",
             args.output, meta["entries"], meta["state"], meta["dim"], meta["lines"],
             meta["skipped_lines"])


def cmd_knn_index(args: argparse.Namespace) -> None:
    from nmtkd.knn.jobs import build_index

    meta = build_index(Path(args.datastore), args.settings, Path(args.output), args.threads)
    log.info("%s: %s index of %d keys, %.1f MB, built in %.1f s (faiss %s)", args.output,
             meta["type"], meta["entries"], meta["bytes"] / 1e6, meta["build_seconds"],
             meta["faiss"])


def cmd_knn_targets(args: argparse.Namespace) -> None:
    from nmtkd.knn.jobs import compute_knn_targets

    meta = compute_knn_targets(Path(args.datastore), Path(args.index), args.k,
                               not args.exclude_self, Path(args.output), args.threads)
    log.info("%s: %d neighbours of each of %d tokens (own entry %s)", args.output, meta["k"],
             meta["positions"], "kept" if meta["keep_self"] else "excluded")


def cmd_corpus(args: argparse.Namespace) -> None:
    from nmtkd.corpora import build_corpus
    from nmtkd.spm import Tokenizer

    if len(args.sources) != len(args.targets):
        raise NmtkdError(f"--sources names {len(args.sources)} files, --targets "
                         f"{len(args.targets)}; give one target per source")
    pairs = [(Path(s), Path(t)) for s, t in zip(args.sources, args.targets, strict=True)]
    written = build_corpus(pairs, Tokenizer(args.spm), Path(args.out_src), Path(args.out_tgt))
    log.info("%s: %d pairs from %d file pair(s)", args.out_src, written, len(pairs))


def cmd_expand_nbest(args: argparse.Namespace) -> None:
    from nmtkd.corpora import expand_nbest

    written = expand_nbest(Path(args.nbest), Path(args.source), args.count,
                           Path(args.out_src), Path(args.out_tgt))
    log.info("%s: %d pairs (%d candidates per source)", args.out_src, written, args.count)


def cmd_agreement(args: argparse.Namespace) -> None:
    from nmtkd.agreement import agreement_files

    result = agreement_files(Path(args.model), Path(args.teacher), Path(args.spm),
                             Path(args.src), Path(args.ref), Path(args.output), args.threads)
    log.info("top-1 agreement %.2f%% over %d tokens; top-1 = reference %.2f%%; reference "
             "perplexity %.2f", result["top1_agreement"], result["tokens"],
             result["top1_reference"], result["ppl"])


def cmd_speed(args: argparse.Namespace) -> None:
    from nmtkd.speed import measure_speeds

    if (args.model is None) == (args.models is None):
        raise NmtkdError("give either --model (one model) or --models (several)")
    options = _decode_options(args)
    if args.model is not None:
        models = {Path(args.model).name: (Path(args.model), options.compute_type)}
    else:
        try:
            models = {name: (Path(spec["model"]), spec.get("compute_type", "default"))
                      for name, spec in args.models.items()}
        except (TypeError, KeyError):
            raise NmtkdError('--models: expected {"name": {"model": DIR, ...}, ...}') from None
    report = measure_speeds(models, Path(args.input), Path(args.output), options,
                            args.repeats, args.sentences)
    for name, result in report["models"].items():
        log.info("%s: %.0f target tokens/s, %.1f sentences/s (spread %.2f)", name,
                 result["tokens_per_second"], result["sentences_per_second"], result["spread"])


def saved_plan(path: str, study: str | None = None) -> Any:
    """The plan of a run's saved config (results/<experiment>/config.yaml; a source config such
    as config.yaml too), checked as the workflow checks it, with `study` selected if given
    (a saved config selects none: every study)."""
    from nmtkd.plan import read_workflow_plan

    command_line = {"study": study} if study is not None else None
    try:
        return read_workflow_plan(path, [], command_line, default_schema())
    except NmtkdError as error:
        if str(error).startswith("config error at "):
            raise NmtkdError(f"{path}: {error}") from None
        raise


def cmd_plots(args: argparse.Namespace) -> None:
    import pandas as pd

    from nmtkd.plots import write_plots

    plan = saved_plan(args.config, args.study)
    try:
        frame = pd.read_csv(args.comparison)
    except (OSError, ValueError) as error:
        raise NmtkdError(f"{args.comparison}: cannot read the comparison ({error})") from None
    write_plots(frame, plan.training_summaries(args.study), plan.plot_context(),
                [Path(p) for p in args.outputs], args.comparison)
    log.info("wrote %s", ", ".join(args.outputs))


def read_manifest(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The comparison manifest: from a saved config's plan, or given as JSON or a JSON file;
    and how errors name it (the file, or --manifest for JSON given inline)."""
    from nmtkd.compare import check_manifest

    if (args.config is None) == (args.manifest is None):
        raise NmtkdError("give either --config (a run's saved config) or --manifest")
    if args.config is not None:
        return saved_plan(args.config, args.study).comparison_manifest(args.study), args.config
    text, source = args.manifest, "--manifest"
    if not text.lstrip().startswith("{"):  # a file name
        source = args.manifest
        try:
            text = Path(text).read_text()
        except OSError as error:
            raise NmtkdError(f"--manifest: cannot read {args.manifest} ({error})") from None
    try:
        manifest = json_object(text)
    except argparse.ArgumentTypeError as error:
        raise NmtkdError(f"{source}: {error}") from None
    check_manifest(manifest, source)
    return manifest, source


def cmd_compare(args: argparse.Namespace) -> None:
    from nmtkd.compare import write_comparison
    from nmtkd.textio import atomic_paths

    manifest, source = read_manifest(args)
    targets = [args.markdown, args.csv, args.latex] + ([args.html] if args.html else [])
    with atomic_paths(targets) as outputs:
        try:
            write_comparison(manifest, *outputs)
        except (KeyError, TypeError, IndexError) as error:
            raise NmtkdError(f"{source}: malformed manifest ({type(error).__name__}: "
                             f"{error})") from None
    log.info("wrote %s", ", ".join(targets))


def cmd_export(args: argparse.Namespace) -> None:
    from nmtkd.export import export_model

    export_model(Path(args.checkpoint), Path(args.spm), Path(args.output), args.quantization)


def _decode_options(args: argparse.Namespace) -> Any:
    from nmtkd.translate import DecodeOptions

    return DecodeOptions(beam_size=args.beam_size, nbest=args.nbest, batch_size=args.batch_size,
                         max_length=args.max_length, length_penalty=args.length_penalty,
                         threads=args.threads, inter_threads=args.inter_threads,
                         compute_type=args.compute_type, device=args.device,
                         max_len_a=args.max_len_a, max_len_b=args.max_len_b)


def _knn_files(args: argparse.Namespace) -> Any:
    """kNN-MT's files and settings from --knn-*, or None without them."""
    given = {"--knn-k": args.knn_k, "--knn-lambda": args.knn_lambda,
             "--knn-temperature": args.knn_temperature}
    given = [flag for flag, value in given.items() if value is not None]
    if bool(args.knn_datastore) != bool(args.knn_index):
        raise NmtkdError("kNN-MT needs both --knn-datastore and --knn-index")
    if not args.knn_datastore:
        if given or args.knn_settings:
            raise NmtkdError(f"{(given or ['--knn-settings'])[0]} needs --knn-datastore and "
                             "--knn-index")
        return None
    from nmtkd.translate import KnnFiles

    files = KnnFiles(Path(args.knn_datastore), Path(args.knn_index))
    if args.knn_settings:
        if given:
            raise NmtkdError(f"give --knn-settings or {given[0]}, not both")
        from nmtkd.knn.tune import read_tuned

        tuned = read_tuned(Path(args.knn_settings))
        return replace(files, k=tuned.k, lam=tuned.lam, temperature=tuned.temperature)
    return replace(files, **{field: value for field, value in (
        ("k", args.knn_k), ("lam", args.knn_lambda), ("temperature", args.knn_temperature))
        if value is not None})


def cmd_knn_tune(args: argparse.Namespace) -> None:
    from nmtkd.knn.tune import KnnGrid, tune_knn_mt

    report = tune_knn_mt(Path(args.model), Path(args.spm), Path(args.knn_datastore),
                         Path(args.knn_index), KnnGrid.from_json(args.grid), Path(args.input),
                         Path(args.references), Path(args.output), _decode_options(args),
                         args.tokenize)
    log.info("kNN-MT on %s: best BLEU %.2f at k %d, λ %g, T %g (without retrieval %.2f)",
             args.input, report["bleu"], report["k"], report["lambda"],
             report["temperature"], report["base_bleu"])


def cmd_knn_speed(args: argparse.Namespace) -> None:
    from nmtkd.knn.speed import measure_knn_speed

    report = measure_knn_speed(Path(args.model), Path(args.spm), _knn_files(args),
                               Path(args.input), Path(args.output), _decode_options(args),
                               args.repeats, args.sentences)
    for name, result in report["models"].items():
        log.info("%s: %.0f target tokens/s (spread %.2f)", name, result["tokens_per_second"],
                 result["spread"])
    log.info("kNN-MT decodes at %.2f× the model's speed without retrieval", report["ratio"])


def cmd_translate(args: argparse.Namespace) -> None:
    from nmtkd.translate import translate_file

    if args.nbest > 1 and not args.nbest_output:
        raise NmtkdError("--nbest needs --nbest-output (the output file holds the 1-best only)")
    translate_file(Path(args.model), Path(args.input), Path(args.output), _decode_options(args),
                   Path(args.nbest_output) if args.nbest_output else None, args.backend,
                   Path(args.spm) if args.spm else None, _knn_files(args))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from nmtkd.evaluate import evaluate_files

    metadata = {"model": args.model_name, "testset": args.testset, **(args.metadata or {})}
    result = evaluate_files(Path(args.hypotheses), Path(args.references), Path(args.output),
                            metadata, args.tokenize, args.chrf_word_order,
                            Path(args.source) if args.source else None)
    log.info("%s on %s: BLEU %.2f chrF %.2f", args.model_name, args.testset, result["bleu"],
             result["chrf"])


def cmd_significance(args: argparse.Namespace) -> None:
    from nmtkd.evaluate import Scoring
    from nmtkd.significance import significance_files

    result = significance_files([Path(p) for p in args.system], [Path(p) for p in args.baseline],
                                Path(args.references), Path(args.output), args.metadata or {},
                                args.bootstrap_samples, args.ar_trials,
                                Scoring(args.tokenize, args.chrf_word_order))
    bleu = result["bleu"]
    log.info("BLEU %+.2f (p bootstrap %s, p AR %s)", bleu["delta"], bleu.get("p_bootstrap"),
             bleu.get("p_ar"))


def cmd_report(args: argparse.Namespace) -> None:
    from nmtkd.report import write_teacher_table

    write_teacher_table([Path(p) for p in args.inputs], Path(args.output),
                        [Path(p) for p in args.agreements])


def cmd_select(args: argparse.Namespace) -> None:
    from nmtkd.seqinter import select_file

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
    from nmtkd.textio import atomic_paths

    if args.nbest_inputs and not args.nbest_output:
        raise NmtkdError("--nbest-inputs needs --nbest-output")
    expected = Path(args.expected) if args.expected else None
    targets = [args.output, args.nbest_output] if args.nbest_inputs else [args.output]
    with atomic_paths(targets) as outputs:  # text and n-best appear together
        count = gather_files([Path(p) for p in args.inputs], outputs[0], expected)
        if args.nbest_inputs:
            # gather_files has already checked `count` against --expected
            gather_nbest([Path(p) for p in args.nbest_inputs], outputs[1], count)
    log.info("gathered %d lines into %s", count, args.output)


def default_schema() -> Path:
    """The config schema: in the working directory's checkout, else beside the package's."""
    relative = Path("schemas") / "config.schema.yaml"
    for candidate in (relative, Path(__file__).resolve().parents[2] / relative):
        if candidate.is_file():
            return candidate
    raise NmtkdError(f"{relative}: schema not found (run in the repository or pass --schema)")


def cmd_check_config(args: argparse.Namespace) -> None:
    """Every check a workflow run of these files makes (the config's own study selection)."""
    from nmtkd.plan import read_workflow_plan

    schema = Path(args.schema) if args.schema else default_schema()
    plan = read_workflow_plan(args.files[0], args.files[1:], None, schema)
    print(f"{' + '.join(args.files)}: valid (experiment {plan.experiment}; "
          f"studies {', '.join(plan.studies)})")


def cmd_write_config(args: argparse.Namespace) -> None:
    import yaml

    from nmtkd.textio import atomic_writer

    with atomic_writer(args.output) as handle:
        yaml.safe_dump(args.json, handle, sort_keys=False, allow_unicode=True)


HANDLERS = {
    "fetch": cmd_fetch, "clean": cmd_clean, "spm-train": cmd_spm_train,
    "spm-encode": cmd_spm_encode, "split": cmd_split, "gather": cmd_gather,
    "train": cmd_train, "teacher-signals": cmd_teacher_signals, "export": cmd_export,
    "datastore": cmd_datastore, "knn-index": cmd_knn_index, "knn-targets": cmd_knn_targets,
    "knn-speed": cmd_knn_speed, "knn-tune": cmd_knn_tune,
    "corpus": cmd_corpus, "expand-nbest": cmd_expand_nbest,
    "translate": cmd_translate, "select": cmd_select, "speed": cmd_speed,
    "evaluate": cmd_evaluate, "significance": cmd_significance,
    "agreement": cmd_agreement, "report": cmd_report,
    "compare": cmd_compare, "plots": cmd_plots, "check-config": cmd_check_config,
    "write-config": cmd_write_config,
}


def build_parser() -> argparse.ArgumentParser:
    return _build_parser(__doc__)


def derived_outputs(args: argparse.Namespace) -> dict[str, Path]:
    """Outputs a command writes beside a named one."""
    if args.command == "spm-train":
        from nmtkd.spm import vocab_path

        return {"--model's .vocab": vocab_path(Path(args.model))}
    if args.command == "knn-tune":
        from nmtkd.knn.tune import resume_file

        return {"--output's resume file": resume_file(Path(args.output))}
    return {}


def derived_inputs(args: argparse.Namespace) -> dict[str, Path]:
    """Inputs a command reads that no path argument names: a URL's mirror copy, a manifest
    given as a file."""
    if args.command == "fetch":
        from nmtkd.importers import mirror_copy, resolve_mirror

        mirror = resolve_mirror(args.mirror)
        copies = {f"{flag}'s mirror copy": mirror_copy(location, mirror)
                  for flag, location in (("--src", args.src), ("--tgt", args.tgt))}
        return {flag: path for flag, path in copies.items() if path is not None}
    if args.command == "compare" and args.manifest and not args.manifest.lstrip().startswith(
            "{"):
        return {"--manifest": Path(args.manifest)}
    return {}


def one_line(message: str) -> str:
    """An error message on one line, naming outputs rather than their temporaries."""
    from nmtkd.safepaths import display_paths

    return display_paths(" ".join(message.split()))


def main(argv: list[str] | None = None) -> int:
    from nmtkd.pathargs import check_paths

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # faiss's loader reports each CPU-specific build it tries (and the ModuleNotFoundError of
    # each missing one) at INFO: noise in every kNN job's log
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    try:
        check_paths(args, derived_outputs(args), derived_inputs(args))
        HANDLERS[args.command](args)
    except NmtkdError as error:
        print(f"nmtkd {args.command}: error: {one_line(str(error))}", file=sys.stderr)
        return 2
    except OSError as error:  # a file system refusal met during the work: still one line
        where = f"{error.filename}: " if error.filename else ""
        message = one_line(f"{where}{error.strerror or error}")
        print(f"nmtkd {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
