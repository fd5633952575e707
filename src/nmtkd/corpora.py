"""Student training corpora: lists of (source, target) file pairs, concatenated in order and
SentencePiece-encoded for `nmtkd train`. A part is one pair: the gold data, the gold source
with a teacher's distilled targets, or a pair with its own source side and line count (the
teacher's 2-best, each source repeated; later back-translation, forward translation of
monolingual text, filtered data)."""

from __future__ import annotations

from pathlib import Path

from nmtkd.errors import NmtkdError
from nmtkd.seqinter import read_nbest
from nmtkd.spm import Tokenizer
from nmtkd.textio import atomic_paths, read_lines

# part name -> what it pairs with the training sources (the `data:` values of a student)
PARTS = {
    "gold": "the reference target",
    "seqkd": "the teacher's top beam hypothesis (Seq-KD)",
    "seqinter": "the n-best candidate closest to the reference (Seq-Inter)",
    "best2": "the teacher's two best hypotheses (two pairs per source)",
}
DISTILLED_PARTS = ("seqkd", "seqinter", "best2")  # parts made by a teacher


def read_pair(source: Path, target: Path) -> tuple[list[str], list[str]]:
    sources, targets = read_lines(source), read_lines(target)
    if len(sources) != len(targets):
        raise NmtkdError(f"line counts differ: {source} has {len(sources)} lines, {target} has "
                         f"{len(targets)}")
    return sources, targets


def build_corpus(pairs: list[tuple[Path, Path]], tokenizer: Tokenizer, out_src: Path,
                 out_tgt: Path) -> int:
    """Concatenate the (source, target) file pairs in order as one SentencePiece-encoded
    parallel corpus; the number of sentence pairs written."""
    written = 0
    with atomic_paths([out_src, out_tgt]) as (src_tmp, tgt_tmp), \
            open(src_tmp, "w", encoding="utf-8") as src_out, \
            open(tgt_tmp, "w", encoding="utf-8") as tgt_out:
        encoded: dict[Path, list[str]] = {}  # a source side shared by several parts
        for source, target in pairs:
            sources, targets = read_pair(source, target)
            if source not in encoded:
                encoded[source] = [" ".join(p) for p in tokenizer.encode_pieces(sources)]
            for line in encoded[source]:
                src_out.write(line + "\n")
            for pieces in tokenizer.encode_pieces(targets):
                tgt_out.write(" ".join(pieces) + "\n")
            written += len(sources)
    return written


def expand_nbest(nbest: Path, source: Path, count: int, out_src: Path, out_tgt: Path) -> int:
    """The first `count` candidates of each n-best list as pairs with their source (repeated
    once per candidate, candidates in rank order); the number of pairs written."""
    sources = read_lines(source)
    lists = read_nbest(nbest)
    if len(lists) != len(sources):
        raise NmtkdError(f"{nbest}: n-best lists for {len(lists)} sentences, but {source} has "
                         f"{len(sources)}")
    with atomic_paths([out_src, out_tgt]) as (src_tmp, tgt_tmp), \
            open(src_tmp, "w", encoding="utf-8") as src_out, \
            open(tgt_tmp, "w", encoding="utf-8") as tgt_out:
        for number, (text, candidates) in enumerate(zip(sources, lists, strict=True), start=1):
            if len(candidates) < count:
                raise NmtkdError(f"{nbest}: sentence {number} has {len(candidates)} "
                                 f"candidate(s); {count} are needed")
            for candidate in candidates[:count]:
                src_out.write(text + "\n")
                tgt_out.write(candidate.text + "\n")
    return len(sources) * count
