"""A small, learnable synthetic translation task, for tests and benchmarks without real data.

Source sentences are random strings of invented words; the target maps each word through a fixed
dictionary and swaps every adjacent pair of words (local reordering), so a correct model can reach
a BLEU close to 100 while a broken one (bad masks, positions, export) cannot.
"""

from __future__ import annotations

import random
import string
from pathlib import Path

from nmtkd.textio import write_lines


def _invent_words(rng: random.Random, count: int, letters: str) -> list[str]:
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(3, 6))))
    return sorted(words)


def make_task(vocabulary: int = 40, seed: int = 7) -> tuple[list[str], dict[str, str]]:
    rng = random.Random(seed)
    source = _invent_words(rng, vocabulary, string.ascii_lowercase[:13])
    target = _invent_words(rng, vocabulary, string.ascii_lowercase[13:])
    rng.shuffle(target)
    return source, dict(zip(source, target, strict=True))


def translate(words: list[str], dictionary: dict[str, str]) -> list[str]:
    mapped = [dictionary[w] for w in words]
    for i in range(0, len(mapped) - 1, 2):
        mapped[i], mapped[i + 1] = mapped[i + 1], mapped[i]
    return mapped


def make_corpus(size: int, seed: int, vocabulary: int = 40, min_len: int = 3,
                max_len: int = 10) -> tuple[list[str], list[str]]:
    words, dictionary = make_task(vocabulary)
    rng = random.Random(seed)
    sources, targets = [], []
    for _ in range(size):
        sentence = [rng.choice(words) for _ in range(rng.randint(min_len, max_len))]
        sources.append(" ".join(sentence))
        targets.append(" ".join(translate(sentence, dictionary)))
    return sources, targets


def write_corpus(directory: Path, sizes: dict[str, int], src_lang: str = "src",
                 tgt_lang: str = "tgt", vocabulary: int = 40) -> dict[str, tuple[Path, Path]]:
    """Write {split}.{lang} files; each split gets its own seed so splits differ."""
    paths = {}
    for index, (split, size) in enumerate(sizes.items()):
        sources, targets = make_corpus(size, seed=100 + index, vocabulary=vocabulary)
        src_path = Path(directory) / f"{split}.{src_lang}"
        tgt_path = Path(directory) / f"{split}.{tgt_lang}"
        write_lines(src_path, sources)
        write_lines(tgt_path, targets)
        paths[split] = (src_path, tgt_path)
    return paths
