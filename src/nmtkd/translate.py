"""Beam search over a file, with CTranslate2 (default) or the project's torch search:
detokenized output in input order and an optional n-best TSV."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import ctranslate2
from tqdm import tqdm

from nmtkd.errors import NmtkdError
from nmtkd.spm import Tokenizer
from nmtkd.textio import atomic_paths, read_lines

BACKENDS = ("ctranslate2", "torch")

log = logging.getLogger("nmtkd")


@dataclass(frozen=True)
class DecodeOptions:
    beam_size: int = 5
    nbest: int = 1
    batch_size: int = 32  # sentences per batch
    max_length: int = 256
    length_penalty: float = 1.0
    threads: int = 1
    inter_threads: int = 1
    compute_type: str = "default"
    device: str = "cpu"
    max_len_a: float = 0.0  # a batch generates at most max_len_a·|x| + max_len_b tokens
    max_len_b: int = 0  # (|x|: its longest source, in pieces); 0 and 0: max_length alone
    fixed_length: bool = False  # every hypothesis runs exactly to its batch's bound (timing)

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise NmtkdError(f"beam size must be >= 1, got {self.beam_size}")
        if self.max_len_a < 0 or self.max_len_b < 0:
            raise NmtkdError("max-len-a and max-len-b must be >= 0")
        labels = {"nbest": "n-best", "batch_size": "batch size", "max_length": "max length",
                  "threads": "threads", "inter_threads": "inter threads"}
        for name, label in labels.items():
            if getattr(self, name) < 1:
                raise NmtkdError(f"{label} must be >= 1, got {getattr(self, name)}")


def load_translator(model_dir: Path, options: DecodeOptions) -> tuple[ctranslate2.Translator,
                                                                       Tokenizer]:
    model_dir = Path(model_dir)
    if not (model_dir / "model.bin").is_file():
        raise NmtkdError(f"{model_dir}: not a CTranslate2 model directory (no model.bin)")
    inter = max(1, min(options.inter_threads, options.threads))  # never more than `threads`
    intra = max(1, options.threads // inter)
    try:
        translator = ctranslate2.Translator(
            str(model_dir), device=options.device, compute_type=options.compute_type,
            inter_threads=inter, intra_threads=intra)
    except (RuntimeError, ValueError) as error:
        raise NmtkdError(f"{model_dir}: cannot load with device={options.device}, "
                         f"compute_type={options.compute_type} ({error})") from None
    return translator, Tokenizer(model_dir / "spm.model")


def ct2_max_positions(model_dir: Path) -> int | None:
    """The positions of a CTranslate2 model that `nmtkd export` wrote (its config.json records
    them; None for exports of older versions)."""
    try:
        value = json.loads((Path(model_dir) / "config.json").read_text()).get("max_positions")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 1 else None


def within_positions(sources: Sequence[list], max_positions: int | None, source_name: str,
                     options: DecodeOptions) -> tuple[list[list], DecodeOptions]:
    """Sources cut to the model's positions (a source also takes </s>), as CTranslate2's
    max_input_length cuts inputs, with one warning naming the first such line; the
    decoding length bounded by the positions too."""
    if max_positions is None:
        return list(sources), options
    limit = max_positions - 1
    long = [index for index, source in enumerate(sources) if len(source) > limit]
    if long:
        log.warning("%s: %d line(s) longer than the model's %d source pieces (max_positions "
                    "%d) cut to %d pieces; the first is line %d, with %d pieces", source_name,
                    len(long), limit, max_positions, limit, long[0] + 1, len(sources[long[0]]))
        sources = [source[:limit] for source in sources]
    return list(sources), replace(options, max_length=min(options.max_length, limit))


@dataclass
class Hypotheses:
    texts: list[list[str]]  # per sentence, nbest texts
    scores: list[list[float]]


def translate_lines(translator: ctranslate2.Translator, tokenizer: Tokenizer, lines: list[str],
                    options: DecodeOptions, progress: bool = True,
                    max_positions: int | None = None, source_name: str = "input") -> Hypotheses:
    """Length-sorted batches, each bounded by `length_bound` of its longest source (with
    `fixed_length`, forced to that length: </s> is barred before it); submitted
    asynchronously, so that `inter_threads` translator replicas decode batches in parallel.
    With `max_positions`, longer sources are cut to the model's positions."""
    from nmtkd.decoding import bounded_chunks

    pieces, options = within_positions(tokenizer.encode_pieces(lines), max_positions,
                                       source_name, options)
    pending = [(chunk, translator.translate_batch(
        [pieces[i] for i in chunk], max_batch_size=options.batch_size,
        beam_size=options.beam_size, num_hypotheses=options.nbest, max_decoding_length=bound,
        min_decoding_length=bound if options.fixed_length else 0,
        length_penalty=options.length_penalty, return_scores=True, asynchronous=True))
        for chunk, bound in bounded_chunks([len(p) for p in pieces], options.batch_size,
                                           options.max_length, options.max_len_a,
                                           options.max_len_b)]
    texts: list[list[str]] = [[] for _ in lines]
    scores: list[list[float]] = [[] for _ in lines]
    with tqdm(total=len(lines), desc="translate", unit=" sent", mininterval=2.0,
              disable=not progress) as bar:
        for chunk, results in pending:
            for index, result in zip(chunk, results, strict=True):
                try:
                    found = result.result()
                except RuntimeError as error:
                    raise NmtkdError(f"{source_name}: CTranslate2 failed ({error}); models "
                                     "exported by this nmtkd cut lines longer than their "
                                     "positions instead") from None
                texts[index] = tokenizer.decode_pieces(found.hypotheses)
                scores[index] = list(found.scores)
            bar.update(len(chunk))
    return Hypotheses(texts, scores)


@dataclass(frozen=True)
class KnnFiles:
    """kNN-MT for the torch backend: a datastore of the decoding model and its index."""

    datastore: Path
    index: Path
    k: int = 8
    lam: float = 0.3
    temperature: float = 100.0


def knn_scorer(checkpoint: Path, knn: KnnFiles, threads: int):
    """The kNN-MT step scorer, after checking that the datastore is keyed by this model;
    faiss searches on the decoding job's threads."""
    from nmtkd.knn.datastore import Datastore
    from nmtkd.knn.index import Index, faiss_module
    from nmtkd.knn.retrieval import KnnScorer, KnnSettings
    from nmtkd.training_job import file_sha256

    faiss_module().omp_set_num_threads(threads)
    datastore = Datastore(knn.datastore)
    datastore.check_model(file_sha256(checkpoint), str(checkpoint))
    return KnnScorer(datastore, Index(knn.index), KnnSettings(knn.k, knn.lam, knn.temperature))


def torch_translator(checkpoint: Path, spm: Path | None, options: DecodeOptions,
                     knn: KnnFiles | None = None, scorer: Callable | None = None,
                     source_name: str = "input"):
    """`translate_lines` for the torch backend: the project's beam search on a checkpoint
    (with `knn`, kNN-MT: every step interpolated with the datastore's neighbours; or with a
    ready step `scorer`). Sources longer than the model's positions are cut to them."""
    import torch

    from nmtkd.beam_search import beam_translate_ids
    from nmtkd.checkpoint import load_model
    from nmtkd.trainer import resolve_device

    if spm is None:
        raise NmtkdError("--backend torch needs --spm (the model's SentencePiece model)")
    if options.compute_type not in ("default", "float32"):
        raise NmtkdError(f"--backend torch decodes in float32, not {options.compute_type}")
    device = resolve_device(options.device, key="--device").type
    model, _ = load_model(checkpoint)
    tokenizer = Tokenizer(spm)
    model.to(device)
    torch.set_num_threads(options.threads)
    if scorer is None and knn is not None:
        scorer = knn_scorer(checkpoint, knn, options.threads)

    def translate(lines: list[str], settings: DecodeOptions) -> Hypotheses:
        sources, settings = within_positions(tokenizer.encode_ids(lines),
                                             model.cfg.max_positions, source_name, settings)
        found = beam_translate_ids(model, sources, settings.batch_size,
                                   settings.beam_size, settings.max_length,
                                   settings.length_penalty, settings.nbest, device,
                                   max_len=(settings.max_len_a, settings.max_len_b),
                                   scorer=scorer)
        return Hypotheses([tokenizer.decode_ids([h.tokens for h in hyps]) for hyps in found],
                          [[h.score for h in hyps] for hyps in found])

    return translate


def ctranslate2_translator(model_dir: Path, options: DecodeOptions, source_name: str = "input"):
    translator, tokenizer = load_translator(model_dir, options)
    positions = ct2_max_positions(model_dir)
    return lambda lines, settings: translate_lines(translator, tokenizer, lines, settings,
                                                   max_positions=positions,
                                                   source_name=source_name)


def translate_file(model: Path, input_path: Path, output_path: Path, options: DecodeOptions,
                   nbest_path: Path | None = None, backend: str = "ctranslate2",
                   spm: Path | None = None, knn: KnnFiles | None = None) -> Hypotheses:
    """Translate a file with a CTranslate2 model directory, or (backend "torch") a torch
    checkpoint and its `spm`, with kNN-MT if `knn` is given; with `nbest_path`, also write
    `options.nbest` candidates per sentence (from a second search with beam = nbest when that
    exceeds the beam size)."""
    lines = read_lines(input_path)
    if not lines:
        raise NmtkdError(f"{input_path}: file is empty")
    if backend not in BACKENDS:
        raise NmtkdError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if knn is not None and backend != "torch":
        raise NmtkdError("kNN-MT (--knn-datastore) decodes with --backend torch")
    translate = (torch_translator(model, spm, options, knn, source_name=str(input_path))
                 if backend == "torch"
                 else ctranslate2_translator(model, options, str(input_path)))
    if nbest_path is not None and options.nbest > options.beam_size:
        # the 1-best comes from the configured beam; a larger n-best needs a wider second search
        best = translate(lines, replace(options, nbest=1))
        hyps = translate(lines, replace(options, beam_size=options.nbest))
    else:
        nbest = options.nbest if nbest_path is not None else 1
        best = hyps = translate(lines, replace(options, nbest=nbest))
    targets = [output_path] if nbest_path is None else [output_path, nbest_path]
    with atomic_paths(targets) as temporaries:  # text and n-best appear together
        with temporaries[0].open("w", encoding="utf-8") as handle:
            for texts in best.texts:
                handle.write(texts[0] + "\n")
        if nbest_path is not None:
            write_nbest(temporaries[1], hyps)
    return hyps


def write_nbest(path: Path, hyps: Hypotheses) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for sentence, (texts, scores) in enumerate(zip(hyps.texts, hyps.scores, strict=True)):
            for rank, (text, score) in enumerate(zip(texts, scores, strict=True)):
                handle.write(f"{sentence}\t{rank}\t{score:.6f}\t{text}\n")
