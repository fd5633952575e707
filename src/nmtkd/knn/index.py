"""The datastore's faiss index (squared L2, as in kNN-MT): exact `flat` (IndexFlatL2) for small
datastores, or `ivfpq` (IndexIVFPQ over an IndexFlatL2 coarse quantizer, trained on a random
sample of the keys) for large ones. faiss ids are datastore rows, so a search returns rows,
and through them the values and the query's own entry.

An index directory holds `index.faiss` and `meta.json` (its settings, the datastore's hash).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from nmtkd.errors import NmtkdError

INDEX_TYPES = ("flat", "ivfpq")
ADD_CHUNK = 500_000  # keys converted to float32 and added at a time


def faiss_module():
    try:
        import faiss
    except ImportError:
        raise NmtkdError("kNN needs faiss: pip install faiss-cpu") from None
    return faiss


@dataclass(frozen=True)
class IndexSettings:
    type: str = "flat"
    centroids: int = 4096  # ivfpq: inverted lists (the reference: 4096)
    code_size: int = 64  # ivfpq: bytes per key, one 8-bit sub-quantizer each (reference: 64)
    nprobe: int = 32  # ivfpq: lists visited per query (the reference scripts: 32)
    train_sample: int = 1_000_000  # ivfpq: keys the quantizers are trained on
    seed: int = 1

    def check(self, dim: int, entries: int) -> None:
        if self.type not in INDEX_TYPES:
            raise NmtkdError(f"knn.index.type: {self.type!r} is not one of "
                             f"{', '.join(INDEX_TYPES)}")
        if self.type == "flat":
            return
        if self.code_size < 1 or dim % self.code_size:
            raise NmtkdError(f"knn.index.code_size: {self.code_size} does not divide the key "
                             f"dimension {dim}")
        if self.nprobe < 1 or self.centroids < 1:
            raise NmtkdError("knn.index: centroids and nprobe must be at least 1")
        if min(entries, self.train_sample) < max(self.centroids, 256):
            raise NmtkdError(f"knn.index.centroids: {self.centroids} centroids need at least "
                             f"{max(self.centroids, 256)} training keys (256 for the 8-bit "
                             f"codes), the datastore has {entries} (train_sample "
                             f"{self.train_sample}); use fewer centroids or type: flat")


def float32_rows(keys: np.ndarray, start: int, stop: int) -> np.ndarray:
    return np.ascontiguousarray(keys[start:stop], dtype=np.float32)


def trained_index(keys: np.ndarray, settings: IndexSettings):
    """An empty faiss index for `keys` [entries, dim]; IVFPQ's quantizers trained on a sample."""
    faiss = faiss_module()
    entries, dim = keys.shape
    settings.check(dim, entries)
    if settings.type == "flat":
        return faiss.IndexFlatL2(dim)
    index = faiss.IndexIVFPQ(faiss.IndexFlatL2(dim), dim, settings.centroids,
                             settings.code_size, 8)
    rng = np.random.default_rng(settings.seed)
    sample = np.sort(rng.choice(entries, min(entries, settings.train_sample), replace=False))
    index.train(np.ascontiguousarray(keys[sample], dtype=np.float32))
    index.nprobe = settings.nprobe
    return index


def add_keys(index, keys: np.ndarray, progress: bool = True) -> None:
    """Add `keys` to `index` in chunks; faiss ids are row numbers."""
    entries = keys.shape[0]
    for start in tqdm(range(0, entries, ADD_CHUNK), desc="index", unit=" chunk",
                      disable=not progress):
        index.add(float32_rows(keys, start, min(entries, start + ADD_CHUNK)))


def build_index(keys: np.ndarray, settings: IndexSettings, progress: bool = True):
    """A faiss index over `keys` [entries, dim] (any float dtype), with row numbers as ids."""
    index = trained_index(keys, settings)
    add_keys(index, keys, progress)
    return index


def write_index(keys: np.ndarray, settings: IndexSettings, directory: Path,
                meta: dict[str, Any]) -> dict[str, Any]:
    """Build the index of `keys` and save it in the empty `directory`, with its build times
    (training the quantizers on the sample, and adding every key) in seconds."""
    faiss = faiss_module()
    started = time.perf_counter()
    index = trained_index(keys, settings)
    trained = time.perf_counter()
    add_keys(index, keys)
    added = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(directory / "index.faiss"))
    meta = {**meta, **asdict(settings), "entries": int(keys.shape[0]), "dim": int(keys.shape[1]),
            "build_seconds": round(added - started, 2),
            "train_seconds": round(trained - started, 2), "add_seconds": round(added - trained, 2),
            "faiss": faiss.__version__, "bytes": (directory / "index.faiss").stat().st_size}
    (directory / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return meta


class Index:
    """A saved index, loaded for searching (nprobe as saved unless given)."""

    def __init__(self, directory: str | Path, nprobe: int | None = None):
        faiss = faiss_module()
        self.directory = Path(directory)
        try:
            self.meta = json.loads((self.directory / "meta.json").read_text(encoding="utf-8"))
            self.index = faiss.read_index(str(self.directory / "index.faiss"))
        except (OSError, ValueError, RuntimeError) as error:
            raise NmtkdError(f"{self.directory}: not a kNN index ({error})") from None
        if self.meta.get("type") == "ivfpq":
            self.index.nprobe = nprobe or int(self.meta["nprobe"])

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Squared L2 distances [n, k] (float32) and datastore rows [n, k] (int64) of the k
        nearest keys of each query, nearest first; row −1 where fewer than k were found."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.index.d:
            raise NmtkdError(f"{self.directory}: queries of shape {queries.shape}, the index "
                             f"holds {self.index.d}-dimensional keys")
        return self.index.search(queries, k)


def searched_batches(index: Index, queries: np.ndarray, k: int, batch: int = 4096,
                     progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """`index.search` over many queries, `batch` at a time (bounded memory, a progress bar)."""
    distances = np.empty((len(queries), k), dtype=np.float32)
    rows = np.empty((len(queries), k), dtype=np.int64)
    for start in tqdm(range(0, len(queries), batch), desc="kNN search", unit=" batch",
                      disable=not progress, mininterval=2.0):
        stop = min(len(queries), start + batch)
        distances[start:stop], rows[start:stop] = index.search(queries[start:stop], k)
    return distances, rows
