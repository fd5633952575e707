"""The kNN datastore on this machine, in one run: building it from a trained model over the
Multi30k training targets (keys: the decoder output after the final norm), its faiss indexes
(exact flat, and IVFPQ with the config's settings), their sizes and build times per million
tokens with a linear estimate for 100 M tokens, and search throughput (queries/s, k = 8 and
64) of faiss flat, faiss IVFPQ and a brute-force torch matmul over the same keys, with the
IVFPQ recall of the exact neighbours. Queries are real decoder states: a random sample of the
keys. Every search uses the same threads; each is warmed up once and timed as the best of 3.

    NMTKD_DATA_MIRROR=... python bench/knn_datastore.py [--model CKPT] [--threads 2]

--model: a trained checkpoint (default: the default run's teacher, if present); its SentencePiece
model and encoded training data are read from the same results directory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from common import REPO, timed

from nmtkd.batching import ParallelData
from nmtkd.checkpoint import load_model
from nmtkd.knn.datastore import Datastore, write_datastore
from nmtkd.knn.index import Index, IndexSettings, faiss_module, searched_batches, write_index
from nmtkd.spm import Tokenizer

RESULTS = REPO / "results/multi30k_en_de"
MILLION = 1_000_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=RESULTS / "models/teacher/model.pt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--queries", type=int, default=2000)
    return parser.parse_args()


def build_store(model_path: Path, directory: Path) -> tuple[Datastore, float]:
    model, _ = load_model(model_path)
    tokenizer = Tokenizer(RESULTS / "spm/spm.model")
    data = ParallelData.from_piece_files(RESULTS / "data/spm/train.en",
                                         RESULTS / "data/spm/train.de", tokenizer,
                                         model.cfg.max_positions)
    started = time.perf_counter()
    write_datastore(model, data, len(data) + data.skipped, "final", 2500, directory,
                    torch.device("cpu"), {"model": str(model_path), "corpus": "multi30k"})
    return Datastore(directory), time.perf_counter() - started


def torch_search(keys: torch.Tensor, norms: torch.Tensor, queries: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact squared L2 neighbours by one matmul per block of queries."""
    found_d, found_i = [], []
    for start in range(0, len(queries), 512):
        block = torch.from_numpy(queries[start:start + 512])
        distances = (block.square().sum(1, keepdim=True) - 2 * block @ keys.T + norms)
        top = distances.topk(k, dim=1, largest=False)
        found_d.append(top.values.numpy())
        found_i.append(top.indices.numpy())
    return np.concatenate(found_d), np.concatenate(found_i)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact,
                                                                         strict=True)]))


def main() -> None:
    args = parse_args()
    if not args.model.is_file():
        raise SystemExit(f"{args.model}: not found; run the default workflow or pass --model")
    torch.set_num_threads(args.threads)
    faiss = faiss_module()
    faiss.omp_set_num_threads(args.threads)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store, store_seconds = build_store(args.model, tmp / "store")
        entries, dim = store.keys.shape
        builds = {}
        for name, settings in (("flat", IndexSettings(type="flat")),
                               ("ivfpq", IndexSettings(**config["knn"]["index"]))):
            builds[name] = write_index(store.keys, settings, tmp / name, {"datastore": "bench"})
        print(f"datastore: {entries} entries x {dim} dims ({store.state}), {args.threads} "
              f"thread(s), faiss {faiss.__version__}")
        print_sizes(entries, store_seconds, store.keys.nbytes + store.values.nbytes, builds)
        search_throughput(store, tmp, args.queries)


def print_sizes(entries: int, store_seconds: float, store_bytes: int,
                builds: dict[str, dict]) -> None:
    """Sizes and build times, per million tokens and at 100 M tokens. Sizes, the datastore's
    pass and adding keys grow linearly; IVFPQ's training runs on at most `train_sample` keys, so
    at 100 M it is scaled from this run's sample to the full sample (k-means is linear in the
    sample at a fixed number of iterations)."""
    per_million = MILLION / entries
    print(f"{'artifact':18} {'MB':>9} {'train s':>8} {'add s':>8} {'s / M tokens':>13} "
          f"{'GB at 100 M':>12} {'h at 100 M':>11}")
    rows = {"datastore (fp16)": (0.0, store_seconds, store_bytes, entries, entries)}
    for name, meta in builds.items():
        sample = min(entries, meta.get("train_sample", entries))
        rows[f"index {name}"] = (meta["train_seconds"], meta["add_seconds"], meta["bytes"],
                                 sample, min(100 * MILLION, meta.get("train_sample", 0)))
    for name, (train, add, size, sample, sample_at_100m) in rows.items():
        train_at_100m = train * sample_at_100m / sample if train else 0.0
        print(f"{name:18} {size / 1e6:9.1f} {train:8.1f} {add:8.1f} {add * per_million:13.1f} "
              f"{size * 100 * per_million / 1e9:12.1f} "
              f"{(train_at_100m + add * 100 * per_million) / 3600:11.2f}")
    print("(100 M: extrapolated from this run, not measured: sizes and adding linearly; IVFPQ's "
          "training scaled linearly from this run's sample to its train_sample of at most 1 M "
          "keys, an upper bound, as faiss trains the PQ codebooks on at most 65,536 of them; "
          "s / M tokens: the datastore's pass or the index's adding)")


def search_throughput(store: Datastore, tmp: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    queries = np.asarray(store.keys[np.sort(rng.choice(len(store), count, replace=False))],
                         dtype=np.float32)
    keys = torch.from_numpy(np.asarray(store.keys, dtype=np.float32))
    norms = keys.square().sum(1)
    indexes = {name: Index(tmp / name) for name in ("flat", "ivfpq")}
    print(f"search: {count} queries (a sample of the keys), best of 3 after a warm-up")
    print(f"{'k':>3} {'method':14} {'queries/s':>10} {'x torch':>8} {'recall':>7}")
    for k in (8, 64):
        searches = {"torch matmul": lambda k=k: torch_search(keys, norms, queries, k),
                    **{f"faiss {name}": (lambda index=index, k=k: searched_batches(
                        index, queries, k)) for name, index in indexes.items()}}
        results = {}
        for name, search in searches.items():
            search()
            seconds, (_, rows) = timed(search, repeat=3)
            results[name] = (count / seconds, rows)
        exact = results["faiss flat"][1]
        base = results["torch matmul"][0]
        for name, (rate, rows) in results.items():
            print(f"{k:3d} {name:14} {rate:10.0f} {rate / base:8.2f} {recall(rows, exact):7.3f}")


if __name__ == "__main__":
    main()
