"""The kNN commands without the command line: `nmtkd datastore`, `nmtkd knn-index` and
`nmtkd knn-targets`, each writing one directory atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nmtkd.errors import NmtkdError
from nmtkd.safepaths import atomic_path


def build_datastore(model: Path, train_src: Path, train_tgt: Path, spm: Path, state: str,
                    max_tokens: int, output: Path, device: str = "auto",
                    threads: int = 0) -> dict[str, Any]:
    """The datastore of `model` over a corpus (its keys: the decoder state `state`)."""
    from nmtkd.knn.datastore import write_datastore
    from nmtkd.trainer import resolve_device
    from nmtkd.training_job import model_over_corpus

    torch_device = resolve_device(device, key="--device")  # before any work
    network, data, model_hash, corpus_hash = model_over_corpus(model, train_src, train_tgt,
                                                               spm, threads)
    meta = {"model": model_hash, "corpus": corpus_hash, "max_tokens": max_tokens}
    with atomic_path(output, directory=True, owner="datastore") as tmp:
        return write_datastore(network, data, len(data) + data.skipped, state, max_tokens, tmp,
                               torch_device, meta)


def build_index(datastore: Path, settings: dict[str, Any], output: Path,
                threads: int = 0) -> dict[str, Any]:
    """The faiss index of a datastore's keys."""
    from nmtkd.knn.datastore import Datastore
    from nmtkd.knn.index import IndexSettings, faiss_module, write_index

    if threads:
        faiss_module().omp_set_num_threads(threads)
    store = Datastore(datastore)
    try:
        chosen = IndexSettings(**settings)
    except TypeError as error:
        raise NmtkdError(f"knn.index: {error}") from None
    meta = {"datastore": store.meta.get("model"), "corpus": store.meta.get("corpus"),
            "state": store.state}
    with atomic_path(output, directory=True, owner="knn-index") as tmp:
        return write_index(store.keys, chosen, tmp, meta)


def compute_knn_targets(datastore: Path, index: Path, k: int, keep_self: bool, output: Path,
                        threads: int = 0) -> dict[str, Any]:
    """Every datastore entry's k neighbours (its own entry kept or not), stored as signals."""
    from nmtkd.knn.datastore import Datastore
    from nmtkd.knn.index import Index, faiss_module
    from nmtkd.knn.targets import write_targets

    if threads:
        faiss_module().omp_set_num_threads(threads)
    store, searched = Datastore(datastore), Index(index)
    check_index_of(searched, store)
    if not 1 <= k <= len(store) - (0 if keep_self else 1):
        raise NmtkdError(f"--k: {k} neighbours asked of {datastore}, which holds "
                         f"{len(store)} entries")
    return write_targets(store, searched, k, keep_self, output, {"index_dir": str(index)})


def check_index_of(index, datastore) -> None:
    """Fail unless `index` was built from `datastore` (same model, corpus, key and size)."""
    same = (index.meta.get("datastore"), index.meta.get("corpus"), index.meta.get("state"),
            len(index)) == (datastore.meta.get("model"), datastore.meta.get("corpus"),
                            datastore.state, len(datastore))
    if not same:
        raise NmtkdError(f"{index.directory}: not the index of {datastore.directory} "
                         "(rebuild it with `nmtkd knn-index`)")
