import json

import pytest

from nmtkd.cleaning import CleaningRules, check_parallel, clean_corpus
from nmtkd.errors import NmtkdError


def write_bytes(path, lines):
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def test_counts_each_drop_reason(tmp_path):
    src = write_bytes(tmp_path / "in.en", [
        b"a good sentence", b"", b"one two", b"\xff\xfe broken", b"same text",
        b"a good sentence", b"w " * 12, b"short", b"keep  me\tplease",
    ])
    tgt = write_bytes(tmp_path / "in.de", [
        b"ein guter satz", b"leer", b"eins zwei", b"kaputt", b"same text",
        b"ein guter satz", b"x", b"a b c d e f g", b"behalte mich",
    ])
    rules = CleaningRules(max_tokens=10, max_length_ratio=3.0, drop_src_equals_tgt=True)
    report = clean_corpus(src, tgt, tmp_path / "out.en", tmp_path / "out.de",
                          tmp_path / "report.json", rules)
    assert report["dropped"] == {"invalid_utf8": 1, "empty": 1, "too_long": 1,
                                 "length_ratio": 1, "src_equals_tgt": 1, "duplicate": 1}
    assert report["input"] == 9 and report["kept"] == 3
    assert (tmp_path / "out.en").read_text().splitlines() == [
        "a good sentence", "one two", "keep me please"]
    assert (tmp_path / "out.de").read_text().splitlines() == [
        "ein guter satz", "eins zwei", "behalte mich"]
    assert json.loads((tmp_path / "report.json").read_text())["kept"] == 3


def test_options_keep_duplicates_and_identical_pairs(tmp_path):
    src = write_bytes(tmp_path / "a", [b"x y", b"x y", b"same"])
    tgt = write_bytes(tmp_path / "b", [b"u v", b"u v", b"same"])
    rules = CleaningRules(deduplicate=False, drop_src_equals_tgt=False)
    report = clean_corpus(src, tgt, tmp_path / "o1", tmp_path / "o2", tmp_path / "r.json", rules)
    assert report["kept"] == 3


def test_mismatched_line_counts_name_both_files_and_leave_nothing(tmp_path):
    src = write_bytes(tmp_path / "train.en", [b"a", b"b", b"c"])
    tgt = write_bytes(tmp_path / "train.de", [b"x", b"y"])
    with pytest.raises(NmtkdError) as error:
        clean_corpus(src, tgt, tmp_path / "out.en", tmp_path / "out.de", tmp_path / "r.json",
                     CleaningRules())
    message = str(error.value)
    assert "train.en has 3 lines" in message and "train.de has 2 lines" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.de", "train.en"]


def test_missing_and_empty_files_are_named(tmp_path):
    present = write_bytes(tmp_path / "ok", [b"a"])
    with pytest.raises(NmtkdError, match="missing.txt: file not found"):
        check_parallel(tmp_path / "missing.txt", present)
    empty_src = write_bytes(tmp_path / "empty.en", [])
    empty_tgt = write_bytes(tmp_path / "empty.de", [])
    with pytest.raises(NmtkdError, match="empty.en: file is empty"):
        clean_corpus(empty_src, empty_tgt, tmp_path / "o1", tmp_path / "o2", tmp_path / "r",
                     CleaningRules())
    assert not (tmp_path / "o1").exists() and not (tmp_path / "r").exists()


def test_gzip_input_is_read(tmp_path):
    import gzip

    with gzip.open(tmp_path / "a.gz", "wb") as handle:
        handle.write(b"hello world\n")
    with gzip.open(tmp_path / "b.gz", "wb") as handle:
        handle.write(b"hallo welt\n")
    assert check_parallel(tmp_path / "a.gz", tmp_path / "b.gz") == 1


def test_duplicates_are_found_across_chunks_and_first_occurrence_kept(tmp_path):
    src_lines = [b"a b", b"c d", b"a b", b"e f", b"g h", b"c d", b"a b", b"i j"]
    tgt_lines = [b"1 2", b"3 4", b"1 2", b"5 6", b"7 8", b"3 4", b"9 9", b"0 0"]
    src = write_bytes(tmp_path / "s", src_lines)
    tgt = write_bytes(tmp_path / "t", tgt_lines)
    for chunk_size in (1, 3, 100):
        report = clean_corpus(src, tgt, tmp_path / "o1", tmp_path / "o2", tmp_path / "r.json",
                              CleaningRules(), chunk_size=chunk_size)
        assert report["dropped"]["duplicate"] == 2, chunk_size
        assert (tmp_path / "o1").read_text().splitlines() == [
            "a b", "c d", "e f", "g h", "a b", "i j"]
        assert (tmp_path / "o2").read_text().splitlines() == [
            "1 2", "3 4", "5 6", "7 8", "9 9", "0 0"]
