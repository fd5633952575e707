"""Student training corpora: the gold data, the teacher's distilled targets, or concatenations
of them (Gordon & Duh's base+kd, base+best-2), SentencePiece-encoded for `nmtkd train`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from nmtkd.errors import NmtkdError
from nmtkd.seqinter import read_nbest
from nmtkd.spm import Tokenizer
from nmtkd.textio import atomic_paths, read_lines

# part name -> what it pairs with each training source
PARTS = {
    "gold": "the reference target",
    "seqkd": "the teacher's top beam hypothesis (Seq-KD)",
    "seqinter": "the n-best candidate closest to the reference (Seq-Inter)",
    "best2": "the teacher's two best hypotheses (two pairs per source)",
}
# part -> the input file it reads its targets from
PART_FILES = {"gold": "gold", "seqkd": "seqkd", "seqinter": "seqinter", "best2": "nbest"}


def part_targets(part: str, files: dict[str, Path], count: int) -> Iterator[list[str]]:
    """Per source sentence, the targets `part` pairs with it."""
    if part == "best2":
        nbest = read_nbest(files["nbest"])
        if len(nbest) != count:
            raise NmtkdError(f"{files['nbest']}: n-best lists for {len(nbest)} sentences, but "
                             f"the source has {count}")
        for number, candidates in enumerate(nbest, start=1):
            if len(candidates) < 2:
                raise NmtkdError(f"{files['nbest']}: sentence {number} has {len(candidates)} "
                                 "candidate(s); best2 needs an n-best list of at least 2")
            yield [candidates[0].text, candidates[1].text]
        return
    path = files[PART_FILES[part]]
    lines = read_lines(path)
    if len(lines) != count:
        raise NmtkdError(f"line counts differ: {path} has {len(lines)} lines, the source has "
                         f"{count}")
    for line in lines:
        yield [line]


def build_corpus(parts: list[str], source: Path, files: dict[str, Path], tokenizer: Tokenizer,
                 out_src: Path, out_tgt: Path) -> int:
    """Concatenate the parts (in order) as one SentencePiece-encoded parallel corpus."""
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise NmtkdError(f"unknown corpus part(s) {', '.join(unknown)} (known: "
                         f"{', '.join(PARTS)})")
    for part in parts:
        if PART_FILES[part] not in files:
            raise NmtkdError(f"part {part!r} needs --{PART_FILES[part]}")
    sources = read_lines(source)
    encoded_sources = [" ".join(p) for p in tokenizer.encode_pieces(sources)]
    pairs = 0
    with atomic_paths([out_src, out_tgt]) as (src_tmp, tgt_tmp), \
            open(src_tmp, "w", encoding="utf-8") as src_out, \
            open(tgt_tmp, "w", encoding="utf-8") as tgt_out:
        for part in parts:
            targets = list(part_targets(part, files, len(sources)))
            flat = [t for per_source in targets for t in per_source]
            encoded = iter(" ".join(p) for p in tokenizer.encode_pieces(flat))
            for encoded_source, per_source in zip(encoded_sources, targets, strict=True):
                for _ in per_source:
                    src_out.write(encoded_source + "\n")
                    tgt_out.write(next(encoded) + "\n")
                    pairs += 1
    return pairs
