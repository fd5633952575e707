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
    assert not (tmp_path / "t.md").exists()
