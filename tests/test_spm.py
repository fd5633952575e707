import pytest

from nmtkd.errors import NmtkdError
from nmtkd.spm import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer, sample_lines, train_spm


def test_special_ids_are_fixed(synthetic_spm):
    tokenizer = Tokenizer(synthetic_spm)
    processor = tokenizer.processor
    assert (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id()) == (
        PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert [processor.id_to_piece(i) for i in range(4)] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert synthetic_spm.with_suffix(".vocab").is_file()


def test_round_trip(synthetic_spm, synthetic):
    tokenizer = Tokenizer(synthetic_spm)
    lines = synthetic["valid"][0].read_text().splitlines()[:20]
    ids = tokenizer.encode_ids(lines)
    assert all(UNK_ID not in row for row in ids)
    assert tokenizer.decode_ids(ids) == lines


def test_sample_is_bounded_and_deterministic(synthetic):
    first = sample_lines(list(synthetic["train"]), 100, seed=3)
    assert len(first) == 100
    assert first == sample_lines(list(synthetic["train"]), 100, seed=3)
    assert first != sample_lines(list(synthetic["train"]), 100, seed=4)


def test_empty_input_is_an_error(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(NmtkdError, match="no text to train SentencePiece"):
        train_spm([tmp_path / "empty.txt"], tmp_path / "spm.model", 100)
    assert not (tmp_path / "spm.model").exists()
