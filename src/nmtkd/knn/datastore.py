"""The kNN-MT datastore: one (key, value) entry per target position of a corpus, where the key
is a decoder state of a trained model run teacher-forced over the corpus's own targets and the
value is the gold next token (the target's pieces, then </s>).

A directory holds memory-mapped arrays (numpy .npy) and a description:
  keys.npy     [entries, d_model] float16   the decoder states
  values.npy   [entries] int32              the gold next tokens
  lengths.npy  [lines] int32                entries per corpus line (target + </s>); 0 for a
                                            line the model could not read (too long)
  meta.json    format, state, model and corpus hashes, counts
Entries follow the corpus's line order (the layout of the teacher signals), so entry e of
line l sits at row offsets[l] + e and every reader maps training tokens to rows directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from nmtkd.batching import ParallelData, token_batches
from nmtkd.errors import NmtkdError
from nmtkd.model import DECODER_STATES, Transformer
from nmtkd.teacher_signals import line_lengths, row_offsets, write_line_rows

FORMAT = 1


@torch.no_grad()
def decoder_states(model: Transformer, data: ParallelData, indices: list[int], state: str,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced decoder states [batch, time, d_model] and gold next tokens [batch, time]
    (padded with PAD) of the examples `indices`."""
    batch = data.collate(indices).to(device)
    memory, mask = model.encode(batch.source)
    _, states = model.decode_with_states(batch.target_in, model.memory_kv(memory), mask,
                                         state=state)
    return states, batch.target_out


def write_datastore(model: Transformer, data: ParallelData, lines: int, state: str,
                    max_tokens: int, directory: Path, device: torch.device,
                    meta: dict[str, Any]) -> dict[str, Any]:
    """Run `model` over `data` (a corpus of `lines` lines) and write its datastore into the
    empty `directory`."""
    if state not in DECODER_STATES:
        raise NmtkdError(f"knn.state: unknown decoder state {state!r} (known: "
                         f"{', '.join(DECODER_STATES)})")
    model.to(device).eval()
    lengths = line_lengths(data, lines)
    offsets = row_offsets(lengths)
    entries = int(offsets[-1])
    directory.mkdir(parents=True, exist_ok=True)
    keys = np.lib.format.open_memmap(directory / "keys.npy", "w+", np.float16,
                                     (entries, model.cfg.d_model))
    values = np.lib.format.open_memmap(directory / "values.npy", "w+", np.int32, (entries,))
    batches = token_batches(data, max_tokens, 0, 0, shuffle=False)
    for indices in tqdm(batches, desc="datastore", unit=" batch", mininterval=2.0):
        states, gold = decoder_states(model, data, indices, state, device)
        write_line_rows((keys, values), (states.to(torch.float16).cpu().numpy(),
                                         gold.to(torch.int32).cpu().numpy()),
                        indices, data, offsets)
    keys.flush()
    values.flush()
    np.save(directory / "lengths.npy", lengths)
    meta = {"format": FORMAT, "state": state, "dim": model.cfg.d_model, "lines": lines,
            "entries": entries, "skipped_lines": int((lengths == 0).sum()), **meta}
    (directory / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return meta


class Datastore:
    """A datastore directory, memory-mapped for reading."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        try:
            self.meta = json.loads((self.directory / "meta.json").read_text(encoding="utf-8"))
            self.keys = np.load(self.directory / "keys.npy", mmap_mode="r")
            self.values = np.load(self.directory / "values.npy", mmap_mode="r")
            self.lengths = np.load(self.directory / "lengths.npy")
        except (OSError, ValueError) as error:
            raise NmtkdError(f"{self.directory}: not a kNN datastore ({error})") from None
        if self.meta.get("format") != FORMAT:
            raise NmtkdError(f"{self.directory}: datastore format {self.meta.get('format')}, "
                             f"this version reads {FORMAT}")
        self.offsets = row_offsets(self.lengths)

    @property
    def state(self) -> str:
        return str(self.meta["state"])

    def __len__(self) -> int:
        return int(self.meta["entries"])

    def check_model(self, model_hash: str, where: str) -> None:
        """Fail unless the keys were computed by the model whose checkpoint hash is given."""
        if self.meta.get("model") != model_hash:
            raise NmtkdError(f"{self.directory}: its keys come from another model than "
                             f"{where}; rebuild it with `nmtkd datastore`")
