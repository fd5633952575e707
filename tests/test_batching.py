from pathlib import Path

import pytest
import torch

from nmtkd.batching import ParallelData, token_batches
from nmtkd.errors import NmtkdError
from nmtkd.spm import BOS_ID, EOS_ID, PAD_ID


def make_data(count=300):
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 40, (count,), generator=gen).tolist()
    noise = torch.randint(0, 4, (count,), generator=gen).tolist()
    sources = [[5 + (i % 7)] * a for i, a in enumerate(lengths)]
    targets = [[9 + (i % 5)] * (a + n) for i, (a, n) in enumerate(zip(lengths, noise, strict=True))]
    return ParallelData(sources, targets)


def test_batches_respect_token_budget_and_cover_every_example_once():
    data = make_data()
    batches = token_batches(data, max_tokens=200, seed=1, epoch=0)
    flat = sorted(i for batch in batches for i in batch)
    assert flat == list(range(len(data)))
    for batch in batches:
        collated = data.collate(batch)
        padded = max(collated.source.numel(), collated.target_out.numel())
        assert padded <= 200 or len(batch) == 1


def test_batches_group_similar_lengths():
    data = make_data()
    batches = token_batches(data, max_tokens=400, seed=1, epoch=0)
    collated = [data.collate(b) for b in batches]
    real = sum(int((c.target_out != PAD_ID).sum()) for c in collated)
    padded = sum(c.target_out.numel() for c in collated)
    assert real / padded > 0.8  # random batching of lengths 1..40 gives about 0.5


def test_order_depends_only_on_seed_and_epoch():
    data = make_data()
    assert token_batches(data, 300, seed=1, epoch=2) == token_batches(data, 300, seed=1, epoch=2)
    assert token_batches(data, 300, seed=1, epoch=2) != token_batches(data, 300, seed=1, epoch=3)


def test_collate_adds_specials_and_pads():
    data = ParallelData([[7, 8], [9]], [[4], [5, 6, 7]])
    batch = data.collate([0, 1])
    assert batch.source.tolist() == [[7, 8, EOS_ID], [9, EOS_ID, PAD_ID]]
    assert batch.target_in.tolist() == [[BOS_ID, 4, PAD_ID, PAD_ID], [BOS_ID, 5, 6, 7]]
    assert batch.target_out.tolist() == [[4, EOS_ID, PAD_ID, PAD_ID], [5, 6, 7, EOS_ID]]
    assert batch.target_tokens == 6


def test_overlong_pairs_are_skipped_and_line_numbers_kept(synthetic_spm, tmp_path):
    from nmtkd.spm import Tokenizer

    tokenizer = Tokenizer(synthetic_spm)
    (tmp_path / "s").write_text("a b\n" + "c " * 30 + "\nd\n")
    (tmp_path / "t").write_text("x\ny\nz w\n")
    data = ParallelData.from_piece_files(tmp_path / "s", tmp_path / "t", tokenizer,
                                         max_length=20)
    assert len(data) == 2 and data.skipped == 1 and data.lines == [0, 2]


GERMAN = ["ein kleines haus am see", "der gruene baum im garten", "zwei rote autos fahren",
          "die katze schlaeft auf dem sofa", "wir essen brot und kaese"]


def foreign_pieces(directory: Path) -> list[str]:
    """German text encoded with a SentencePiece model of German (not the synthetic task's)."""
    from nmtkd.spm import Tokenizer, train_spm

    corpus = directory / "german.txt"
    corpus.write_text("\n".join(GERMAN * 40) + "\n")
    train_spm([corpus], directory / "german.model", vocab_size=60)
    return [" ".join(p) for p in Tokenizer(directory / "german.model").encode_pieces(GERMAN)]


@pytest.mark.parametrize("text", ["raw", "foreign"])
def test_text_not_encoded_with_the_model_is_refused(synthetic, synthetic_spm, tmp_path, text):
    from nmtkd.spm import Tokenizer
    from nmtkd.textio import read_lines

    tokenizer = Tokenizer(synthetic_spm)
    lines = read_lines(synthetic["valid"][0])[:50] if text == "raw" else foreign_pieces(tmp_path)
    (tmp_path / "s").write_text("".join(line + "\n" for line in lines))
    (tmp_path / "t").write_text("".join(line + "\n" for line in lines))
    known = set(tokenizer.vocabulary()) - {"<unk>"}
    pieces = [piece for line in lines for piece in line.split()]
    share = sum(piece not in known for piece in pieces) / len(pieces)
    assert share > 0.1  # the premise: far more than MAX_UNKNOWN_SHARE (1 %)
    with pytest.raises(NmtkdError) as error:
        ParallelData.from_piece_files(tmp_path / "s", tmp_path / "t", tokenizer)
    assert str(error.value).startswith(
        f"{tmp_path / 's'}: {100 * share:.1f}% of its {len(pieces)} pieces are unknown to "
        f"{synthetic_spm} (<unk>)")


def test_a_few_unknown_pieces_are_a_warning(synthetic_spm, tmp_path, caplog):
    from nmtkd.spm import Tokenizer

    tokenizer = Tokenizer(synthetic_spm)
    piece = next(p for p in tokenizer.vocabulary()[4:] if p.startswith("\u2581"))
    # 1 unknown piece in 500 (0.2 %): kept, with a warning
    line = f"{piece} " * 100 + "\n"
    (tmp_path / "s").write_text(f"{piece} " * 99 + "\u2581\u0416\n" + line * 4)
    (tmp_path / "t").write_text(f"{piece}\n" * 5)
    data = ParallelData.from_piece_files(tmp_path / "s", tmp_path / "t", tokenizer)
    assert len(data) == 5 and data.sources[0].count(1) == 1
    assert "0.20% of its 500 pieces are unknown" in caplog.text
