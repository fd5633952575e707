"""The joint SentencePiece model: training on a sample, encoding, decoding."""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from nmtkd.errors import NmtkdError
from nmtkd.safepaths import require_file
from nmtkd.textio import atomic_paths, iter_lines

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"


def sample_lines(paths: Iterable[Path], sample_size: int, seed: int) -> list[str]:
    """Reservoir-sample up to `sample_size` lines from all files together."""
    rng = random.Random(seed)
    reservoir: list[str] = []
    seen = 0
    for path in paths:
        for line in iter_lines(path):
            seen += 1
            if len(reservoir) < sample_size:
                reservoir.append(line)
            else:
                slot = rng.randrange(seen)
                if slot < sample_size:
                    reservoir[slot] = line
    return reservoir


def train_spm(
    inputs: list[Path], model_out: Path, vocab_size: int, sample_size: int = 1_000_000,
    seed: int = 1, character_coverage: float = 1.0, threads: int = 1,
) -> None:
    """Train a unigram model with fixed special ids; writes `<model_out>` and its .vocab."""
    model_out = Path(model_out)
    lines = [line for line in sample_lines(inputs, sample_size, seed) if line.strip()]
    if not lines:
        raise NmtkdError(f"{', '.join(map(str, inputs))}: no text to train SentencePiece on")
    # model and vocabulary appear together or not at all
    with atomic_paths([model_out, vocab_path(model_out)]) as (model_tmp, vocab_tmp):
        prefix = model_tmp.parent / "sentencepiece-training"
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(lines), model_prefix=str(prefix),
                model_type="unigram", vocab_size=vocab_size,
                character_coverage=character_coverage, num_threads=threads,
                pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
                pad_piece=PAD, unk_piece=UNK, bos_piece=BOS, eos_piece=EOS,
                input_sentence_size=0, shuffle_input_sentence=False,
                hard_vocab_limit=False, minloglevel=2,
            )
        except RuntimeError as error:
            raise NmtkdError(f"SentencePiece training failed: {error}") from None
        os.replace(prefix.with_suffix(".vocab"), vocab_tmp)
        os.replace(prefix.with_suffix(".model"), model_tmp)


def vocab_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.stem + ".vocab")


class Tokenizer:
    """Thin wrapper over a SentencePiece model with the project's fixed special ids."""

    def __init__(self, model_path: str | Path):
        path = Path(model_path)
        require_file(path, "SentencePiece model")
        self.path = path
        try:
            self.processor = spm.SentencePieceProcessor(model_file=str(path))
        except (RuntimeError, OSError) as error:
            raise NmtkdError(f"{path}: not a SentencePiece model ({error})") from None
        ids = (self.processor.pad_id(), self.processor.unk_id(),
               self.processor.bos_id(), self.processor.eos_id())
        if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise NmtkdError(f"{path}: special ids {ids} are not (pad, unk, bos, eos)=(0,1,2,3)")

    def __len__(self) -> int:
        return self.processor.get_piece_size()

    def encode_ids(self, lines: list[str]) -> list[list[int]]:
        return self.processor.encode(lines, out_type=int)

    def encode_pieces(self, lines: list[str]) -> list[list[str]]:
        return self.processor.encode(lines, out_type=str)

    def decode_ids(self, ids: list[list[int]]) -> list[str]:
        return self.processor.decode(ids)

    def decode_pieces(self, pieces: list[list[str]]) -> list[str]:
        return self.processor.decode_pieces(pieces)

    def vocabulary(self) -> list[str]:
        return [self.processor.id_to_piece(i) for i in range(len(self))]
