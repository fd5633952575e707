"""The comparison's plots and HTML tables: the Pareto front and the per-student summary against
hand-worked values, and the files drawn from hand-made results."""

import json
import math
import xml.etree.ElementTree as ElementTree
from html.parser import HTMLParser

import pandas as pd
import pytest
from test_students import teacher_baseline_seq_kd

from nmtkd.compare import check_manifest, write_comparison
from nmtkd.errors import NmtkdError
from nmtkd.plots import label_offsets, pareto_front, student_summary, write_plots

NAN = float("nan")


def test_pareto_front_keeps_the_models_nothing_beats_on_both_axes():
    points = [(1.0, 10.0), (2.0, 9.0), (3.0, 9.0), (0.5, 11.0), (2.0, 8.0), (NAN, 20.0)]
    # (2, 9) is beaten by (3, 9): as good, faster; (2, 8) by (2, 9); NaN is never on the front
    assert pareto_front(points) == [3, 0, 2]
    assert pareto_front([(1.0, 1.0), (1.0, 1.0)]) == [0, 1]  # equal points: neither dominates
    assert pareto_front([]) == []


def test_labels_of_close_points_take_different_sides():
    # the run's int8 plot: baseline_seqinter and seq_kd 0.4 % of the speed span apart
    x = pd.Series({"teacher": 2242.0, "baseline_seqinter": 3342.0, "seq_kd": 3469.0,
                   "word_kd": 3199.0, "third": 3400.0})
    y = pd.Series({"teacher": 25.8, "baseline_seqinter": 22.27, "seq_kd": 22.26,
                   "word_kd": 21.6, "third": 22.28})
    offsets = label_offsets(x, y)
    assert offsets["teacher"] == (4, 4, "left") and offsets["word_kd"] == (4, 4, "left")
    assert offsets["baseline_seqinter"] == (4, 4, "left")
    assert offsets["seq_kd"] == (4, -11, "left")  # above-right is taken by its neighbour
    assert offsets["third"] == (-4, 4, "right")  # both right-hand sides are taken
    assert label_offsets(pd.Series({"a": 1.0}), pd.Series({"a": 2.0})) == {"a": (4, 4, "left")}


def test_student_summary_averages_test_sets_per_run_then_runs():
    rows = []
    for model, student, bleus in (("t", "teacher", (30, 34)), ("k/seed1", "kd", (27, 29)),
                                  ("k/seed2", "kd", (30, 32))):
        for testset, bleu in zip(("a", "b"), bleus, strict=True):
            rows.append({"model": model, "student": student, "testset": testset,
                         "bleu_beam": bleu, "bleu_beam_int8": bleu - 1, "top1_agreement": 80,
                         "tok_s_float32": 100, "tok_s_int8": 200, "tok_s_fixed_float32": 90,
                         "tok_s_fixed_int8": 180, "params": 4e6,
                         "size_float32_mb": 16, "size_int8_mb": 4})
    summary = student_summary(pd.DataFrame(rows))
    assert list(summary.index) == ["teacher", "kd"]
    # kd's runs average 28 and 31 over the test sets: mean 29.5, sample std 1.5·√2
    assert summary.loc["kd", "bleu_beam"] == 29.5
    assert summary.loc["kd", "bleu_beam_std"] == pytest.approx(1.5 * math.sqrt(2))
    assert summary.loc["kd", "runs"] == 2
    assert summary.loc["teacher", "bleu_beam"] == 32 and summary.loc["teacher",
                                                                     "bleu_beam_std"] == 0


def hand_made_comparison(tmp_path):
    manifest = teacher_baseline_seq_kd(tmp_path)
    outputs = [tmp_path / f"comparison.{ext}" for ext in ("md", "csv", "tex", "html")]
    write_comparison(manifest, *outputs)
    return outputs


def test_plots_are_drawn_from_the_comparison(tmp_path):
    csv = hand_made_comparison(tmp_path)[1]
    trainings = {}
    for name in ("teacher", "baseline"):
        path = tmp_path / f"{name}.training.json"
        path.write_text(json.dumps({"history": [
            {"update": 100, "valid_bleu": 10.0, "valid_nll": 3.0},
            {"update": 200, "valid_bleu": 20.0, "valid_nll": 2.0}]}))
        trainings[name] = str(path)
    context = {"experiment": "x", "teacher": "teacher", "beam": 5, "speed_testset": "test"}
    plots = tmp_path / "plots"
    names = ["bleu_speed_float32", "bleu_speed_int8", "bleu_size", "validation_curves",
             "agreement_bleu"]
    outputs = [plots / f"{name}.{fmt}" for name in names for fmt in ("png", "svg")]
    write_plots(pd.read_csv(csv), trainings, context, outputs)
    for output in outputs:
        content = output.read_bytes()
        if output.suffix == ".png":
            assert content.startswith(b"\x89PNG\r\n\x1a\n")
        else:
            ElementTree.fromstring(content)  # well-formed
    speed = (plots / "bleu_speed_int8.svg").read_text()
    assert "Pareto front" in speed and "seq_kd" in speed
    assert "int8 tokens/s on CPU (test, fixed output lengths)" in speed
    agreement = (plots / "agreement_bleu.svg").read_text()
    assert "seq_kd" in agreement and ">teacher<" not in agreement  # TA is 100 by definition
    assert "baseline" in (plots / "validation_curves.svg").read_text()
    selective = tmp_path / "selective.training.json"
    selective.write_text(json.dumps({"train_curve": [
        {"update": 10, "train_nll": 3.0, "train_threshold": 2.5, "train_selected": 0.5},
        {"update": 20, "train_nll": 2.0, "train_threshold": 2.0, "train_selected": 0.5}]}))
    write_plots(pd.read_csv(csv), {"selective_kd_global": str(selective), **trainings}, context,
                [plots / "selection.svg"])
    drawn = (plots / "selection.svg").read_text()
    assert "selective_kd_global" in drawn and ">baseline<" not in drawn  # no threshold logged


def test_an_unknown_plot_is_refused_and_nothing_is_written(tmp_path):
    csv = hand_made_comparison(tmp_path)[1]
    context = {"experiment": "x", "teacher": "teacher", "beam": 5, "speed_testset": "test"}
    outputs = [tmp_path / "p" / "bleu_size.png", tmp_path / "p" / "bleu_colour.png"]
    with pytest.raises(NmtkdError, match="bleu_colour.png: not a plot this command draws"):
        write_plots(pd.read_csv(csv), {}, context, outputs)
    assert not outputs[0].exists()
    with pytest.raises(NmtkdError, match="t.json: no history"):
        (tmp_path / "t.json").write_text("{}")
        write_plots(pd.read_csv(csv), {"t": str(tmp_path / "t.json")}, context,
                    [tmp_path / "p" / "validation_curves.svg"])


def test_a_plot_without_points_is_refused_but_one_with_some_is_drawn(tmp_path):
    frame = pd.read_csv(hand_made_comparison(tmp_path)[1])
    for column in [c for c in frame if c.startswith(("tok_s_", "sent_s_"))]:
        frame[column] = NAN  # speed not measured
    frame["top1_agreement"] = NAN  # as with a teacher given only as a CTranslate2 model
    context = {"experiment": "x", "teacher": "teacher", "beam": 5, "speed_testset": "test"}
    plots = tmp_path / "plots"
    write_plots(frame, {}, context, [plots / "bleu_size.svg", plots / "agreement_bleu.svg"])
    assert "seq_kd" in (plots / "bleu_size.svg").read_text()
    agreement = (plots / "agreement_bleu.svg").read_text()
    assert "Top-1 Agreement against BLEU" in agreement and "seq_kd" not in agreement  # no TA
    outputs = [plots / "bleu_size.png", plots / "bleu_speed_int8.png"]
    with pytest.raises(NmtkdError, match="c.csv: nothing to draw in bleu_speed_int8: no row "
                       "has values in tok_s_int8 and bleu_beam_int8"):
        write_plots(frame, {}, context, outputs, "c.csv")
    assert not any(output.exists() for output in outputs)  # all or none


def test_a_nan_in_a_result_file_is_refused_an_absent_measure_is_an_empty_cell(tmp_path):
    manifest = teacher_baseline_seq_kd(tmp_path)
    (tmp_path / "seq_kd.int8.speed.json").write_text(json.dumps(
        {"tokens_per_second": 3500.0, "sentences_per_second": 350.0}))  # no fixed lengths
    outputs = [tmp_path / f"comparison.{ext}" for ext in ("md", "csv", "tex")]
    write_comparison(manifest, *outputs)
    frame = pd.read_csv(outputs[1]).set_index("model")
    assert frame.loc["seq_kd", "tok_s_int8"] == 3500
    assert math.isnan(frame.loc["seq_kd", "tok_s_fixed_int8"])
    (tmp_path / "seq_kd.beam.json").write_text(json.dumps({"bleu": NAN, "chrf": 47.5,
                                                           "ter": 72.5}))  # written as NaN
    again = [tmp_path / f"again.{ext}" for ext in ("md", "csv", "tex")]
    with pytest.raises(NmtkdError, match="seq_kd.beam.json: bleu is NaN, not a finite number"):
        write_comparison(manifest, *again)
    assert not any(output.exists() for output in again)


def test_a_manifest_error_names_the_field(tmp_path):
    manifest = teacher_baseline_seq_kd(tmp_path)
    check_manifest(manifest, "m.json")
    del manifest["models"][2]["eval"]["test"]
    with pytest.raises(NmtkdError, match=r"^m\.json: models\[2\]\.eval\.test is missing$"):
        check_manifest(manifest, "m.json")
    manifest["models"][2] = {**manifest["models"][1], "seed": float("inf")}
    with pytest.raises(NmtkdError, match=r"models\[2\]\.seed is Infinity, expected a finite"):
        check_manifest(manifest, "m.json")


class TableCells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables, self.cells, self.in_cell = 0, [], False

    def handle_starttag(self, tag, attrs):
        self.tables += tag == "table"
        self.in_cell = tag in ("td", "th")

    def handle_data(self, data):
        if self.in_cell and data.strip():
            self.cells.append(data.strip())


def test_the_html_tables_hold_the_markdown_tables_cells(tmp_path):
    page = hand_made_comparison(tmp_path)[3].read_text()
    parser = TableCells()
    parser.feed(page)
    assert parser.tables == 2  # the overview and the one test set
    assert "seq_kd" in parser.cells and "+2.50" in parser.cells  # 27.5 - 25.0
    assert "BLEU K=5" in parser.cells and "<h2>test</h2>" in page
