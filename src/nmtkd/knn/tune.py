"""kNN-MT's k, λ and T chosen on the validation set: the model decodes it once per point of a
small grid (the torch beam search, as the test sets are decoded), and the point with the best
BLEU wins; the model without retrieval (λ = 0) is scored too, for reference. Each finished
point is kept in `<output>.partial`, so a killed search resumes where it stopped."""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from nmtkd.errors import NmtkdError
from nmtkd.evaluate import Scoring
from nmtkd.knn.retrieval import KnnSettings
from nmtkd.textio import atomic_writer, read_lines
from nmtkd.translate import DecodeOptions, KnnFiles, knn_scorer, torch_translator


@dataclass(frozen=True)
class KnnGrid:
    k: tuple[int, ...]
    lam: tuple[float, ...]
    temperature: tuple[float, ...]

    @classmethod
    def from_json(cls, grid: dict[str, Any]) -> KnnGrid:
        """The grid of `{"k": [...], "lambda": [...], "temperature": [...]}`."""
        unknown = sorted(set(grid) - {"k", "lambda", "temperature"})
        if unknown:
            raise NmtkdError(f"knn.tune: unknown key {unknown[0]!r} (known: k, lambda, "
                             "temperature)")
        values = {name: grid.get(name) for name in ("k", "lambda", "temperature")}
        for name, given in values.items():
            if not isinstance(given, list) or not given:
                raise NmtkdError(f"knn.tune.{name}: needs a list of at least one value")
        return cls(tuple(int(k) for k in values["k"]),
                   tuple(float(lam) for lam in values["lambda"]),
                   tuple(float(t) for t in values["temperature"]))

    def points(self) -> list[dict[str, float]]:
        """Every combination, in grid order (ties go to the first: the smallest k, λ, T as
        listed)."""
        for name, values in (("k", self.k), ("lambda", self.lam),
                             ("temperature", self.temperature)):
            if not values:
                raise NmtkdError(f"knn.tune.{name}: needs at least one value")
        return [{"k": k, "lambda": lam, "temperature": temperature}
                for k, lam, temperature in itertools.product(self.k, self.lam, self.temperature)]


def read_tuned(path: Path) -> KnnSettings:
    """The k, λ and T a tuning run chose (`nmtkd knn-tune`'s output)."""
    try:
        tuned = json.loads(Path(path).read_text(encoding="utf-8"))
        return KnnSettings(int(tuned["k"]), float(tuned["lambda"]), float(tuned["temperature"]))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise NmtkdError(f"{path}: not a kNN-MT tuning result ({error})") from None


def read_partial(partial: Path, fingerprint: dict[str, Any]) -> list[dict[str, Any]]:
    """The points scored by an earlier run of the same search, or none."""
    if not partial.is_file():
        return []
    try:
        state = json.loads(partial.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return []
    return state["scored"] if state.get("of") == fingerprint else []


def write_partial(partial: Path, fingerprint: dict[str, Any], scored: list[dict]) -> None:
    staging = partial.with_name(partial.name + ".tmp")
    staging.write_text(json.dumps({"of": fingerprint, "scored": scored}), encoding="utf-8")
    os.replace(staging, partial)


def best_point(scored: list[dict[str, Any]]) -> dict[str, Any]:
    """The retrieval point with the highest BLEU; the first of equals."""
    candidates = [point for point in scored if point["lambda"] > 0]
    return max(candidates, key=lambda point: point["bleu"]) if candidates else scored[0]


def tune_knn_mt(checkpoint: Path, spm: Path, knn: KnnFiles, grid: KnnGrid, source: Path,
                reference: Path, output: Path, options: DecodeOptions,
                tokenize: str = "13a") -> dict[str, Any]:
    """Decode `source` at λ = 0 and at every grid point, score BLEU against `reference`, and
    write the best point with the whole grid to `output` (JSON)."""
    from nmtkd.training_job import file_sha256

    lines, references = read_lines(source), read_lines(reference)
    if not lines or len(lines) != len(references):
        raise NmtkdError(f"{source} has {len(lines)} lines, {reference} has {len(references)}: "
                         "need the same number, at least one")
    points = [{"k": grid.k[0], "lambda": 0.0, "temperature": grid.temperature[0]},
              *grid.points()]
    fingerprint = {"model": file_sha256(checkpoint), "datastore": str(knn.datastore),
                   "index": str(knn.index), "source": file_sha256(source),
                   "reference": file_sha256(reference), "options": asdict(options),
                   "tokenize": tokenize, "points": points}
    partial = output.with_name(output.name + ".partial")
    scored = read_partial(partial, fingerprint)
    scorer = knn_scorer(checkpoint, knn, options.threads)
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
