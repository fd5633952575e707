import json

import pytest

from nmtkd.cleaning import CleaningRules, check_parallel, clean_corpus, sentence_length
from nmtkd.errors import NmtkdError


def write_bytes(path, lines):
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def test_counts_each_drop_reason(tmp_path):
    src = write_bytes(tmp_path / "in.en", [
        b"a good sentence", b"", b"one two", b"\xff\xfe broken", b"same text",
        b"a good sentence", b"w " * 12, b"short", b"keep  me\tplease", b"nul \x00 inside",
        b"fine", b"a\x1c\x0bb",
    ])
    tgt = write_bytes(tmp_path / "in.de", [
        b"ein guter satz", b"leer", b"eins zwei", b"kaputt", b"same text",
        b"ein guter satz", b"x", b"a b c d e f g", b"behalte mich", b"null drin",
        b"esc \x1b[0m", b"c",
    ])
    rules = CleaningRules(max_tokens=10, max_length_ratio=3.0, drop_src_equals_tgt=True)
    report = clean_corpus(src, tgt, tmp_path / "out.en", tmp_path / "out.de",
                          tmp_path / "report.json", rules)
    # a NUL (src) and an ESC (tgt) drop their pairs; \x1c and \x0b are whitespace to Python
    assert report["dropped"] == {"invalid_utf8": 1, "control_character": 2, "empty": 1,
                                 "too_long": 1, "length_ratio": 1, "src_equals_tgt": 1,
                                 "duplicate": 1}
    assert report["input"] == 12 and report["kept"] == 4
    assert (tmp_path / "out.en").read_text().splitlines() == [
        "a good sentence", "one two", "keep me please", "a b"]
    assert (tmp_path / "out.de").read_text().splitlines() == [
        "ein guter satz", "eins zwei", "behalte mich", "c"]
    assert json.loads((tmp_path / "report.json").read_text())["kept"] == 4
    assert report["bom_stripped"] == []


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


JAPANESE_ENGLISH = [
    ("私は毎朝コーヒーを飲みます。", "I drink coffee every morning."),
    ("駅までどのくらいかかりますか？", "How long does it take to get to the station?"),
    ("昨日は雨が降ったので、家で本を読みました。",
     "It rained yesterday, so I read a book at home."),
    ("この店のラーメンはとてもおいしいです。", "The ramen at this shop is very good."),
    ("来週の会議は月曜日の午後三時からです。",
     "Next week's meeting starts at three on Monday afternoon."),
    ("彼女は東京の大学で経済学を勉強しています。",
     "She is studying economics at a university in Tokyo."),
    ("窓を開けてもいいですか。", "May I open the window?"),
]
CHINESE_ENGLISH = [
    ("我每天早上六点起床。", "I get up at six every morning."),
    ("这本书比那本书有意思多了。", "This book is much more interesting than that one."),
    ("请问，去火车站怎么走？", "Excuse me, how do I get to the train station?"),
    ("今天天气很好，我们去公园散步吧。",
     "The weather is nice today, let's go for a walk in the park."),
    ("他在北京的一家银行工作了十年。", "He worked at a bank in Beijing for ten years."),
    ("周末我常常和朋友一起打篮球。", "On weekends I often play basketball with friends."),
    ("这个问题我们明天再讨论。", "Let's discuss this problem again tomorrow."),
]


def write_text(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("pairs", [JAPANESE_ENGLISH, CHINESE_ENGLISH], ids=["ja", "zh"])
def test_unsegmented_japanese_and_chinese_pairs_are_kept(tmp_path, pairs):
    for source, english in pairs:
        # the old rule counted whitespace tokens: 1 against 4 or more, a ratio over 3.0
        assert len(source.split()) == 1 and len(english.split()) > 3
    src = write_text(tmp_path / "in.src", [source for source, _ in pairs])
    tgt = write_text(tmp_path / "in.en", [english for _, english in pairs])
    report = clean_corpus(src, tgt, tmp_path / "o1", tmp_path / "o2", tmp_path / "r.json",
                          CleaningRules())
    assert report["kept"] == len(pairs), report["dropped"]
    kept_sources = (tmp_path / "o1").read_text(encoding="utf-8").splitlines()
    assert kept_sources == [source for source, _ in pairs]


@pytest.mark.parametrize(("text", "length"), [
    ("Two dogs play in the snow .", 7),  # whitespace tokens, as before
    ("Die Straße ist schön .", 5),  # non-ASCII, still whitespace tokens
    ("나는 고양이를 좋아한다", 3),  # Hangul is written with spaces
    # 私は毎朝コーヒーを飲みます: 13 kana/kanji (ー counts), 。 does not: ceil(13 / 2)
    ("私は毎朝コーヒーを飲みます。", 7),
    ("iPhone15を", 2),  # を: ceil(1 / 2) = 1, plus 1 for the Latin letters and digits
    ("2024年に", 2),  # 年に: ceil(2 / 2) = 1, plus 1 for the digits
    ("私 は 学生 です 。", 5),  # already segmented: 1 + 1 + 1 + 1, and 。 alone is a token
    ("他说：“你好。”", 2),  # 他说你好: ceil(4 / 2); the quotes and colon are punctuation
    ("ฉันรักแมว", 4),  # 7 Thai letters (its two combining vowel marks are not): ceil(7 / 2)
])
def test_sentence_length_by_hand(text, length):
    assert sentence_length(text) == length


def test_misaligned_and_overlong_unsegmented_lines_are_still_dropped(tmp_path):
    long_japanese = ("先週、東京駅から新幹線に乗って京都へ行き、"
                     "有名な古い寺や神社を見て回った後で、"
                     "夜は昔の友達と一緒に駅の近くで魚料理を食べました。")
    assert len(long_japanese) - long_japanese.count("、") - long_japanese.count("。") == 60
    # 20 hanzi a sentence (今天天气很好 6 + 我们去公园散步 7 + 然后一起吃午饭 7), 20 times: 400
    long_chinese = "今天天气很好，我们去公园散步，然后一起吃午饭。" * 20
    assert sentence_length(long_japanese) == 30 and sentence_length(long_chinese) == 200
    src = write_text(tmp_path / "in.src",
                     [long_japanese, long_chinese, "私は毎朝コーヒーを飲みます。"])
    tgt = write_text(tmp_path / "in.en", [
        "Yes.", "The weather is nice today, so we walk in the park and then have lunch.",
        "I drink coffee every morning."])
    report = clean_corpus(src, tgt, tmp_path / "o1", tmp_path / "o2", tmp_path / "r.json",
                          CleaningRules(max_tokens=100))
    assert report["dropped"]["length_ratio"] == 1 and report["dropped"]["too_long"] == 1
    assert report["kept"] == 1


def test_bom_is_stripped_and_reported(tmp_path):
    src = tmp_path / "bom.en"
    src.write_bytes(b"\xef\xbb\xbfhello world\nsecond line\n")
    tgt = write_bytes(tmp_path / "plain.de", [b"hallo welt", b"zweite zeile"])
    report = clean_corpus(src, tgt, tmp_path / "o1", tmp_path / "o2", tmp_path / "r.json",
                          CleaningRules())
    first_line = (tmp_path / "o1").read_text(encoding="utf-8").splitlines()[0]
    assert first_line == "hello world" and "\ufeff" not in first_line
    assert report["bom_stripped"] == [str(src)]
    assert json.loads((tmp_path / "r.json").read_text())["bom_stripped"] == [str(src)]


@pytest.mark.parametrize(("src_ending", "tgt_ending", "cr_file"), [
    (b"\r", b"\r", "train.en"),  # both CR-only: each reads as 1 line, once kept as 1 merged pair
    (b"\r", b"\n", "train.en"),  # 1 line against 3
    (b"\n", b"\r", "train.de"),
])
def test_cr_only_line_endings_are_named_and_leave_nothing(tmp_path, src_ending, tgt_ending,
                                                          cr_file):
    src = tmp_path / "train.en"
    src.write_bytes(src_ending.join([b"a b", b"c d", b"e f"]) + src_ending)
    tgt = tmp_path / "train.de"
    tgt.write_bytes(tgt_ending.join([b"u v", b"w x", b"y z"]) + tgt_ending)
    with pytest.raises(NmtkdError) as error:
        clean_corpus(src, tgt, tmp_path / "out.en", tmp_path / "out.de", tmp_path / "r.json",
                     CleaningRules())
    message = str(error.value)
    assert f"{tmp_path / cr_file}: the line endings look like CR only (classic Mac)" in message
    assert "tr '\\r' '\\n'" in message and "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.de", "train.en"]


def test_single_cr_only_line_against_several_gets_the_hint(tmp_path):
    src = tmp_path / "one.en"
    src.write_bytes(b"only one line\r")
    tgt = write_bytes(tmp_path / "three.de", [b"a", b"b", b"c"])
    with pytest.raises(NmtkdError, match=r"one\.en has 1 lines, .*three\.de has 3 lines; "
                                         r".*one\.en: the line endings look like CR only"):
        check_parallel(src, tgt)
