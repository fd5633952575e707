"""kNN-MT at decoding time: at every beam-search step, the decoder state of each live beam is
the query; its k nearest datastore entries give p_kNN, interpolated with the model's
distribution (see `distribution`). Plugs into `beam_search` as its step scorer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from nmtkd.errors import NmtkdError
from nmtkd.knn.datastore import Datastore
from nmtkd.knn.distribution import interpolate, knn_probabilities
from nmtkd.knn.index import Index


@dataclass(frozen=True)
class KnnSettings:
    k: int = 8  # the reference's IWSLT'14 values (kNN-KD README)
    lam: float = 0.3
    temperature: float = 100.0

    def check(self, entries: int) -> None:
        if not 1 <= self.k <= entries:
            raise NmtkdError(f"knn.k: must be between 1 and the datastore's {entries} entries, "
                             f"got {self.k}")
        if not 0.0 <= self.lam <= 1.0:
            raise NmtkdError(f"knn.lambda: must be in [0, 1], got {self.lam}")
        if self.temperature <= 0:
            raise NmtkdError(f"knn.temperature: must be positive, got {self.temperature}")


def neighbour_values(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The datastore values at faiss rows [n, k]; −1 where the index found no neighbour."""
    found = rows >= 0
    out = np.full(rows.shape, -1, dtype=np.int64)
    out[found] = values[rows[found]]
    return out


class KnnScorer:
    """A beam-search step scorer: the model's log-probabilities of the live beams, turned into
    kNN-MT's interpolated ones. `state` names the decoder state the datastore is keyed on."""

    def __init__(self, datastore: Datastore, index: Index, settings: KnnSettings):
        from nmtkd.knn.jobs import check_index_of

        check_index_of(index, datastore)
        self.values = np.asarray(datastore.values)
        self.index, self.state = index, datastore.state
        self.use(settings)
        self.queries = 0

    def use(self, settings: KnnSettings) -> None:
        """Retrieve and interpolate with `settings` from the next step on."""
        settings.check(len(self.values))
        self.settings = settings

    def __call__(self, log_probs: Tensor, states: Tensor) -> Tensor:
        distances, rows = self.index.search(states.float().cpu().numpy(), self.settings.k)
        self.queries += len(rows)
        values = torch.from_numpy(neighbour_values(self.values, rows)).to(log_probs.device)
        knn = knn_probabilities(values, torch.from_numpy(distances).to(log_probs.device),
                                self.settings.temperature, log_probs.size(-1))
        return interpolate(log_probs, knn, self.settings.lam)
