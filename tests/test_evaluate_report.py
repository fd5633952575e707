import json

import pytest

from nmtkd.errors import NmtkdError
from nmtkd.evaluate import evaluate_files, score
from nmtkd.report import write_teacher_table


def test_scores_and_signatures():
    perfect = score(["a small cat sits on the mat ."], ["a small cat sits on the mat ."])
    assert perfect["bleu"] == 100.0 and perfect["chrf"] == 100.0 and perfect["ter"] == 0.0
    partial = score(["the cat sat on a mat"], ["the cat sat on the mat"])
    # 13a tokens: 5/6 unigrams, 3/5 bigrams, 1/4 trigrams, 0/3 4-grams (exp smoothing)
    assert 0 < partial["bleu"] < 60
    assert partial["ter"] == pytest.approx(100 / 6, abs=0.01)
    assert partial["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")


def test_evaluate_files_and_table(tmp_path):
    text = "ein Hund läuft über die Wiese .\neine Katze schläft auf dem Sofa .\n"
    (tmp_path / "hyp").write_text(text)
    (tmp_path / "ref").write_text(text)
    for testset in ("b_set", "a_set"):
        evaluate_files(tmp_path / "hyp", tmp_path / "ref", tmp_path / f"{testset}.json",
                       {"model": "teacher", "testset": testset, "decoding": "beam 5"})
    result = json.loads((tmp_path / "a_set.json").read_text())
    assert result["bleu"] == 100.0 and result["sentences"] == 2
    write_teacher_table([tmp_path / "b_set.json", tmp_path / "a_set.json"], tmp_path / "t.md")
    table = (tmp_path / "t.md").read_text()
    assert table.index("a_set") < table.index("b_set")
    assert "| a_set" in table and "100.00" in table
    assert "BLEU signature: `nrefs:1|case:mixed" in table


def test_teacher_table_lists_top1_equals_reference_per_data_set(tmp_path):
    (tmp_path / "ref").write_text("ein Hund .\n")
    evaluate_files(tmp_path / "ref", tmp_path / "ref", tmp_path / "a.json",
                   {"model": "teacher", "testset": "a_set"})
    agreements = []
    for name, share in (("train.en", 71.25), ("a_set.en", 88.5)):
        agreements.append(tmp_path / f"{name}.agreement.json")
        agreements[-1].write_text(json.dumps({"testset": f"/data/{name}", "tokens": 400,
                                              "top1_reference": share}))
    write_teacher_table([tmp_path / "a.json"], tmp_path / "t.md", agreements)
    section = (tmp_path / "t.md").read_text().split("## Top-1 = reference")[1]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]]
            for line in section.splitlines() if line.startswith("| ")][1:]
    assert rows == [["train.en", "400", "71.25"], ["a_set.en", "400", "88.50"]]
    agreements[0].write_text(json.dumps({"testset": "x"}))
    with pytest.raises(NmtkdError, match="train.en.agreement.json: not a result of nmtkd "
                       "agreement"):
        write_teacher_table([tmp_path / "a.json"], tmp_path / "u.md", agreements)
    assert not (tmp_path / "u.md").exists()


def test_length_mismatch_is_named(tmp_path):
    (tmp_path / "hyp").write_text("a\n")
    (tmp_path / "ref").write_text("a\nb\n")
    with pytest.raises(NmtkdError, match="hyp has 1 lines.*ref has 2 lines"):
        evaluate_files(tmp_path / "hyp", tmp_path / "ref", tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


def test_report_names_a_broken_result_file(tmp_path):
    (tmp_path / "bad.json").write_text('{"model": "teacher"}')
    with pytest.raises(NmtkdError, match="bad.json: evaluation result lacks testset"):
        write_teacher_table([tmp_path / "bad.json"], tmp_path / "t.md")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(NmtkdError, match="broken.json: cannot read evaluation result"):
        write_teacher_table([tmp_path / "broken.json"], tmp_path / "t.md")
    record = {"model": "teacher", "testset": "a", "sentences": 2, "bleu": 30.0, "chrf": 55.0,
              "ter": 50.0, "bleu_signature": "b", "chrf_signature": "c", "ter_signature": "t"}
    (tmp_path / "nan.json").write_text(json.dumps({**record, "bleu": float("nan")}))
    with pytest.raises(NmtkdError, match="nan.json: bleu is NaN, not a finite number"):
        write_teacher_table([tmp_path / "nan.json"], tmp_path / "t.md")
    (tmp_path / "text.json").write_text(json.dumps({**record, "ter": "50"}))
    with pytest.raises(NmtkdError, match='text.json: ter is "50", not a finite number'):
        write_teacher_table([tmp_path / "text.json"], tmp_path / "t.md")
    assert not (tmp_path / "t.md").exists()


def test_japanese_is_scored_on_mecab_words_not_on_whole_sentences():
    from nmtkd.evaluate import default_tokenize

    assert default_tokenize("ja") == "ja-mecab" and default_tokenize("zh") == "zh"
    assert default_tokenize("de") == "13a"
    hypothesis, reference = ["犬が好きです。"], ["猫が好きです。"]
    # 13a sees one token per sentence: nothing matches
    assert score(hypothesis, reference, tokenize="13a")["bleu"] == 0.0
    # MeCab: 犬/猫 が 好き です 。 -> 4/5 unigrams, 3/4 bigrams, 2/3 trigrams, 1/2 4-grams,
    # equal lengths: BLEU = (4/5 * 3/4 * 2/3 * 1/2) ** (1/4) = 0.2 ** 0.25
    mecab = score(hypothesis, reference, tokenize="ja-mecab")
    assert mecab["bleu"] == pytest.approx(100 * 0.2 ** 0.25, abs=0.01)
    assert "tok:ja-mecab" in mecab["bleu_signature"]
    with pytest.raises(NmtkdError, match="unknown BLEU tokenizer 'mecab'"):
        score(hypothesis, reference, tokenize="mecab")


def test_chrf_plus_plus_counts_word_bigrams_and_says_so():
    hypothesis, reference = ["the cat sat on a mat"], ["the cat sat on the mat"]
    plain, plus = score(hypothesis, reference), score(hypothesis, reference, chrf_word_order=2)
    assert "nw:0" in plain["chrf_signature"] and "nw:2" in plus["chrf_signature"]
    # word unigrams (5/6) and bigrams (3/5) now join the six character orders in the average
    assert plus["chrf"] != plain["chrf"]
    same = score(reference, reference, chrf_word_order=2)
    assert same["chrf"] == 100.0


def test_blank_references_and_an_empty_output_are_refused(tmp_path):
    (tmp_path / "hyp").write_text("a dog\na cat\n")
    (tmp_path / "blank").write_text("\n \n")
    (tmp_path / "empty").write_text("")
    with pytest.raises(NmtkdError, match="blank: every reference line is blank"):
        evaluate_files(tmp_path / "hyp", tmp_path / "blank", tmp_path / "out.json")
    with pytest.raises(NmtkdError, match="empty: empty file"):
        evaluate_files(tmp_path / "empty", tmp_path / "empty", tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


def test_table_notes_name_the_knn_settings_the_speed_job_used(tmp_path):
    from nmtkd.compare import table_notes

    speed = tmp_path / "knn_mt.json"
    speed.write_text(json.dumps({"ratio": 0.3, "knn": {"k": 16, "lambda": 0.5,
                                                       "temperature": 10}}))
    manifest = {"beam_size": 5, "speed_testset": "t", "models": [
        {"name": "teacher"}, {"name": "knn_mt", "loss": "kNN-MT", "knn_speed": str(speed)}]}
    notes = table_notes(manifest)
    assert "knn_mt: kNN-MT (used: k 16, λ 0.5, T 10), the torch beam search" in notes
    assert "(used:" not in table_notes({**manifest, "models": manifest["models"][:1]})
