"""kNN-MT's k, λ and T chosen on the validation set: the model decodes it once per point of a
small grid (the torch beam search, as the test sets are decoded), and the point with the best
BLEU wins; the model without retrieval (λ = 0) is scored too, for reference. Each finished
point is kept in `<output>.partial`, so a killed search resumes where it stopped."""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from nmtkd.errors import NmtkdError
from nmtkd.evaluate import Scoring
from nmtkd.knn.retrieval import KnnSettings
from nmtkd.textio import atomic_writer, read_lines
from nmtkd.translate import DecodeOptions, KnnFiles, knn_scorer, torch_translator

GRID_KEYS = ("k", "lambda", "temperature")


def grid_values(grid: dict[str, Any], name: str) -> tuple[float, ...]:
    """One axis of a grid, checked: k whole numbers ≥ 1, λ in (0, 1] (λ = 0, the model alone,
    is always scored), T > 0; no repeats."""
    given = grid.get(name)
    valid = {"k": lambda v: isinstance(v, int) and v >= 1,
             "lambda": lambda v: isinstance(v, int | float) and 0 < v <= 1,
             "temperature": lambda v: isinstance(v, int | float) and v > 0}[name]
    if not isinstance(given, list) or not given or not all(
            valid(v) and not isinstance(v, bool) for v in given):
        expected = {"k": "whole numbers >= 1", "lambda": "numbers in (0, 1]",
                    "temperature": "numbers > 0"}[name]
        raise NmtkdError(f"knn.tune.{name}: needs a list of {expected}, got {given!r}")
    if len(set(given)) != len(given):
        raise NmtkdError(f"knn.tune.{name}: repeats a value in {given!r}")
    return tuple(given)


@dataclass(frozen=True)
class KnnGrid:
    k: tuple[int, ...]
    lam: tuple[float, ...]
    temperature: tuple[float, ...]

    @classmethod
    def from_json(cls, grid: dict[str, Any]) -> KnnGrid:
        """The grid of `{"k": [...], "lambda": [...], "temperature": [...]}`."""
        unknown = sorted(set(grid) - set(GRID_KEYS))
        if unknown:
            raise NmtkdError(f"knn.tune: unknown key {unknown[0]!r} (known: k, lambda, "
                             "temperature)")
        k, lam, temperature = (grid_values(grid, name) for name in GRID_KEYS)
        return cls(tuple(int(v) for v in k), tuple(float(v) for v in lam),
                   tuple(float(v) for v in temperature))

    def check(self, entries: int) -> None:
        if max(self.k) > entries:
            raise NmtkdError(f"knn.tune.k: {max(self.k)} neighbours asked of a datastore of "
                             f"{entries} entries")

    def points(self) -> list[dict[str, float]]:
        """λ = 0 (the model alone), then every combination in the order listed (ties go to
        the first listed)."""
        return [{"k": self.k[0], "lambda": 0.0, "temperature": self.temperature[0]},
                *({"k": k, "lambda": lam, "temperature": temperature} for k, lam, temperature
                  in itertools.product(self.k, self.lam, self.temperature))]


def read_tuned(path: Path) -> KnnSettings:
    """The k, λ and T a tuning run chose (`nmtkd knn-tune`'s output)."""
    try:
        tuned = json.loads(Path(path).read_text(encoding="utf-8"))
        return KnnSettings(int(tuned["k"]), float(tuned["lambda"]), float(tuned["temperature"]))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise NmtkdError(f"{path}: not a kNN-MT tuning result ({error})") from None


def resume_file(output: Path) -> Path:
    """Where a search keeps its scored points until it finishes."""
    return output.with_name(output.name + ".partial")


def read_partial(partial: Path, fingerprint: dict[str, Any],
                 points: list[dict[str, float]]) -> list[dict[str, Any]]:
    """The points scored by an earlier run of the same search (a prefix of `points`), or none
    when there is no such run or its file cannot be read."""
    try:
        state = json.loads(partial.read_text(encoding="utf-8"))
        scored = state["scored"] if state["of"] == fingerprint else []
        done = [{key: point[key] for key in GRID_KEYS} for point in scored]
        return scored if done == points[:len(done)] and all(
            isinstance(point["bleu"], float | int) for point in scored) else []
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def write_partial(partial: Path, fingerprint: dict[str, Any], scored: list[dict]) -> None:
    with atomic_writer(partial) as handle:
        json.dump({"of": fingerprint, "scored": scored}, handle)


def best_point(scored: list[dict[str, Any]]) -> dict[str, Any]:
    """The retrieval point with the highest BLEU; the first of equals."""
    return max((point for point in scored if point["lambda"] > 0),
               key=lambda point: point["bleu"])


def search_fingerprint(checkpoint: Path, spm: Path, datastore: Path, index: Path,
                       source: Path, reference: Path, options: DecodeOptions, tokenize: str,
                       points: list[dict[str, float]]) -> dict[str, Any]:
    """What a search's scores depend on: the files (the datastore and index by their meta,
    which records each build), the decoding options but threads, BLEU's tokenizer, the grid."""
    from nmtkd.training_job import file_sha256

    decoding = {key: value for key, value in asdict(options).items()
                if key not in ("threads", "inter_threads")}
    return {"model": file_sha256(checkpoint), "spm": file_sha256(spm),
            "datastore": (datastore / "meta.json").read_text(encoding="utf-8"),
            "index": (index / "meta.json").read_text(encoding="utf-8"),
            "source": file_sha256(source), "reference": file_sha256(reference),
            "options": decoding, "tokenize": tokenize, "points": points}


def tune_knn_mt(checkpoint: Path, spm: Path, datastore: Path, index: Path, grid: KnnGrid,
                source: Path, reference: Path, output: Path, options: DecodeOptions,
                tokenize: str = "13a") -> dict[str, Any]:
    """Decode `source` at λ = 0 and at every grid point, score BLEU against `reference`, and
    write the best point with the whole grid to `output` (JSON)."""
    lines, references = read_lines(source), read_lines(reference)
    if not lines or len(lines) != len(references):
        raise NmtkdError(f"{source} has {len(lines)} lines, {reference} has {len(references)}: "
                         "need the same number, at least one")
    points = grid.points()
    scorer = knn_scorer(checkpoint, KnnFiles(datastore, index, points[0]["k"], 0.0,
                                             points[0]["temperature"]), options.threads)
    grid.check(len(scorer.values))
    fingerprint = search_fingerprint(checkpoint, spm, datastore, index, source, reference,
                                     options, tokenize, points)
    partial = resume_file(output)
    scored = read_partial(partial, fingerprint, points)
    translate = torch_translator(checkpoint, spm, options, scorer=scorer)
    metric = Scoring(tokenize).metrics()["bleu"]
    for point in tqdm(points[len(scored):], desc="kNN-MT grid", unit=" point",
                      initial=len(scored), total=len(points)):
        scorer.use(KnnSettings(point["k"], point["lambda"], point["temperature"]))
        found = translate(lines, options)
        bleu = metric.corpus_score([texts[0] for texts in found.texts], [references]).score
        scored.append({**point, "bleu": round(bleu, 2)})
        write_partial(partial, fingerprint, scored)
    report = {**best_point(scored), "base_bleu": scored[0]["bleu"], "grid": scored,
              "source": str(source), "reference": str(reference),
              "beam_size": options.beam_size, "bleu_signature": str(metric.get_signature())}
    with atomic_writer(output) as handle:
        json.dump(report, handle, indent=2)
    partial.unlink()
    return report
