"""kNN-KD's "search in advance" (Yang et al. 2022): for every target token of the training
corpus, its k nearest datastore entries, found once and stored for the student's training.

The datastore is built over that same corpus by the same model, teacher-forced in eval mode,
so a token's query is its own key: the search reads the keys instead of running the model
again. The token's own entry is then its nearest neighbour (distance 0 on an exact index).
The reference keeps it (`keep_self`, the default); without it the search asks for k + 1 and
drops the entry whose row is the query's own (or the farthest, if the index missed it).

The result has the teacher signals' layout (`nmtkd.teacher_signals`), so the trainer reads it
with the same code: ids.npy holds the neighbours' values (int32), logits.npy their negated
squared L2 distances (float16), so that softmax(logits / T) is the kNN-KD soft target.
The search runs in blocks; a killed run resumes from its work directory (`<output>.work`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from nmtkd.knn.datastore import Datastore
from nmtkd.knn.index import Index
from nmtkd.knn.retrieval import neighbour_values
from nmtkd.safepaths import atomic_path, mark_directory
from nmtkd.textio import atomic_writer

FLOAT16_MAX = float(np.finfo(np.float16).max)
OWNER = "knn-targets"
ARRAYS = ("ids.npy", "logits.npy")


def without_self(distances: np.ndarray, rows: np.ndarray, own_rows: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """From k + 1 neighbours per query, the k that are not the query's own entry."""
    drop = rows == own_rows[:, None]
    missed = ~drop.any(axis=1)
    drop[missed, -1] = True  # the own entry was not among them: drop the farthest instead
    keep = ~drop
    return (distances[keep].reshape(len(rows), k), rows[keep].reshape(len(rows), k))


def search_block(datastore: Datastore, index: Index, start: int, stop: int, k: int,
                 keep_self: bool) -> tuple[np.ndarray, np.ndarray]:
    """Values [n, k] and distances [n, k] of the neighbours of entries start..stop."""
    distances, rows = index.search(datastore.keys[start:stop], k if keep_self else k + 1)
    if not keep_self:
        distances, rows = without_self(distances, rows, np.arange(start, stop), k)
    return neighbour_values(datastore.values, rows), distances


def read_progress(progress: Path) -> dict[str, Any]:
    """The work directory's progress, or {} if it has none that can be read."""
    try:
        found = json.loads(progress.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) and "of" in found and "done" in found else {}


def write_progress(progress: Path, fingerprint: dict[str, Any], done: int) -> None:
    """Written atomically, so that a kill never leaves half a file."""
    with atomic_writer(progress) as handle:
        json.dump({"of": fingerprint, "done": done}, handle)


def open_work(work: Path, entries: int, k: int, fingerprint: dict[str, Any]) -> tuple[
        np.memmap, np.memmap, Path]:
    """The work directory's arrays, resumed if it holds a run with the same fingerprint."""
    progress = work / "progress.json"
    resumable = read_progress(progress).get("of") == fingerprint
    if not resumable:
        shutil.rmtree(work, ignore_errors=True)
    mark_directory(work, OWNER)
    mode = "r+" if resumable else "w+"
    ids = np.lib.format.open_memmap(work / "ids.npy", mode, np.int32, (entries, k))
    logits = np.lib.format.open_memmap(work / "logits.npy", mode, np.float16, (entries, k))
    if not resumable:
        write_progress(progress, fingerprint, 0)
    return ids, logits, progress


def write_targets(datastore: Datastore, index: Index, k: int, keep_self: bool, output: Path,
                  meta: dict[str, Any], block: int = 65_536) -> dict[str, Any]:
    """Search the neighbours of every datastore entry and write them as signals in `output`."""
    entries = len(datastore)
    fingerprint = {"datastore": datastore.meta.get("model"), "corpus":
                   datastore.meta.get("corpus"), "state": datastore.state, "index": index.meta,
                   "k": k, "keep_self": keep_self, "entries": entries}
    work = output.with_name(output.name + ".work")
    ids, logits, progress = open_work(work, entries, k, fingerprint)
    done = read_progress(progress)["done"]
    with tqdm(total=entries, initial=done, desc="kNN targets", unit=" token",
              mininterval=2.0) as bar:
        for start in range(done, entries, block):
            stop = min(entries, start + block)
            values, distances = search_block(datastore, index, start, stop, k, keep_self)
            ids[start:stop] = values
            logits[start:stop] = -np.minimum(distances, FLOAT16_MAX)
            ids.flush()
            logits.flush()
            write_progress(progress, fingerprint, stop)
            bar.update(stop - start)
    del ids, logits
    meta = {"format": 1, "kind": "knn", "k": k, "keep_self": keep_self,
            "lines": int(len(datastore.lengths)), "positions": entries,
            "skipped_lines": int((datastore.lengths == 0).sum()),
            "teacher": datastore.meta.get("model"), "corpus": datastore.meta.get("corpus"),
            "state": datastore.state, "index": index.meta.get("type"), **meta}
    with atomic_path(output, directory=True, owner=OWNER) as tmp:
        tmp.mkdir()
        for name in ARRAYS:
            os.replace(work / name, tmp / name)
        np.save(tmp / "lengths.npy", datastore.lengths)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    return meta
