"""kNN-MT's grid search on the validation set (`nmtkd knn-tune`): every point's BLEU equals a
separate decode scored by sacreBLEU, the best point wins, λ = 0 is the model alone, a killed
search resumes at its first unscored point, and the tuned k, λ, T reach `translate`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import sacrebleu

from nmtkd.errors import NmtkdError
from nmtkd.knn import tune
from nmtkd.knn.retrieval import KnnScorer
from nmtkd.knn.tune import KnnGrid, best_point, read_tuned, tune_knn_mt
from nmtkd.textio import read_lines
from nmtkd.translate import DecodeOptions, KnnFiles, torch_translator

pytest.importorskip("faiss")

OPTIONS = DecodeOptions(beam_size=3, batch_size=8, max_length=40, threads=1)
GRID = KnnGrid(k=(1, 4), lam=(0.5, 0.9), temperature=(10.0,))


def nmtkd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nmtkd.cli", *args], capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def tuning_inputs(synthetic, synthetic_spm, trained_tiny, tmp_path_factory):
    """The tiny model's datastore over the synthetic training data, an exact index, and the
    first 24 validation pairs."""
    from conftest import encode_pair

    from nmtkd.spm import Tokenizer

    directory = tmp_path_factory.mktemp("knn_tune")
    train = encode_pair(Tokenizer(synthetic_spm), *synthetic["train"], directory)
    for args in (("datastore", "--model", str(trained_tiny), "--train-src", str(train[0]),
                  "--train-tgt", str(train[1]), "--spm", str(synthetic_spm), "--output",
                  str(directory / "store"), "--threads", "1"),
                 ("knn-index", "--datastore", str(directory / "store"), "--output",
                  str(directory / "index"), "--settings", '{"type": "flat"}')):
        assert nmtkd(*args).returncode == 0
    for side, path in zip(("src", "ref"), synthetic["valid"], strict=True):
        (directory / f"valid.{side}").write_text(
            "\n".join(read_lines(path)[:24]) + "\n", encoding="utf-8")
    return {"model": trained_tiny, "spm": synthetic_spm, "directory": directory,
            "knn": KnnFiles(directory / "store", directory / "index")}


def bleu_of(inputs, knn: KnnFiles | None) -> float:
    """A separate decode of the validation source, scored by sacreBLEU directly."""
    directory = inputs["directory"]
    translate = torch_translator(inputs["model"], inputs["spm"], OPTIONS, knn)
    found = translate(read_lines(directory / "valid.src"), OPTIONS)
    return round(sacrebleu.corpus_bleu([texts[0] for texts in found.texts],
                                       [read_lines(directory / "valid.ref")]).score, 2)


def run_tuning(inputs, output):
    directory = inputs["directory"]
    return tune_knn_mt(inputs["model"], inputs["spm"], inputs["knn"].datastore,
                       inputs["knn"].index, GRID, directory / "valid.src",
                       directory / "valid.ref", output, OPTIONS)


def test_every_point_is_a_separate_decodes_bleu_and_the_best_wins(tuning_inputs, tmp_path):
    report = run_tuning(tuning_inputs, tmp_path / "tuned.json")
    store, index = tuning_inputs["knn"].datastore, tuning_inputs["knn"].index
    expected = [{"k": 1, "lambda": 0.0, "temperature": 10.0, "bleu": bleu_of(tuning_inputs, None)}]
    for k, lam in ((1, 0.5), (1, 0.9), (4, 0.5), (4, 0.9)):
        knn = KnnFiles(store, index, k, lam, 10.0)
        expected.append({"k": k, "lambda": lam, "temperature": 10.0,
                         "bleu": bleu_of(tuning_inputs, knn)})
    assert report["grid"] == expected
    assert report["base_bleu"] == expected[0]["bleu"]
    best = max(expected[1:], key=lambda point: point["bleu"])
    assert (report["k"], report["lambda"], report["bleu"]) == (best["k"], best["lambda"],
                                                                best["bleu"])
    assert json.loads((tmp_path / "tuned.json").read_text()) == report
    assert not (tmp_path / "tuned.json.partial").exists()
    assert len({point["bleu"] for point in expected}) > 1  # retrieval changes the output


def test_a_killed_search_resumes_at_its_first_unscored_point(tuning_inputs, tmp_path,
                                                            monkeypatch):
    straight = run_tuning(tuning_inputs, tmp_path / "straight.json")
    used = []
    original = KnnScorer.use

    def dying_after_two(self, settings):  # the scorer's first settings, then λ = 0, (1, 0.5)
        if len(used) == 3:
            raise KeyboardInterrupt
        used.append(settings)
        original(self, settings)

    monkeypatch.setattr(KnnScorer, "use", dying_after_two)
    output = tmp_path / "resumed.json"
    with pytest.raises(KeyboardInterrupt):
        run_tuning(tuning_inputs, output)
    partial = json.loads((tmp_path / "resumed.json.partial").read_text())
    assert [p["bleu"] for p in partial["scored"]] == [p["bleu"] for p in straight["grid"][:2]]
    assert not output.exists()
    used.clear()
    monkeypatch.setattr(KnnScorer, "use", lambda self, s: (used.append(s), original(self, s)))
    assert run_tuning(tuning_inputs, output) == straight
    # the scorer is built at the first point, λ = 0, then set for the three unscored points
    assert [(s.k, s.lam) for s in used] == [(1, 0.0), (1, 0.9), (4, 0.5), (4, 0.9)]


def test_best_point_prefers_retrieval_and_the_first_of_equals():
    scored = [{"k": 8, "lambda": 0.0, "temperature": 10, "bleu": 30.0},
              {"k": 8, "lambda": 0.2, "temperature": 10, "bleu": 29.0},
              {"k": 16, "lambda": 0.2, "temperature": 10, "bleu": 29.5},
              {"k": 16, "lambda": 0.4, "temperature": 10, "bleu": 29.5}]
    assert best_point(scored) == scored[2]


def test_grids_and_tuning_results_are_checked(tmp_path):
    grid = KnnGrid.from_json({"k": [4, 8], "lambda": [0.3], "temperature": [10, 100]})
    assert grid.points() == [{"k": 4, "lambda": 0.0, "temperature": 10.0},
                             {"k": 4, "lambda": 0.3, "temperature": 10.0},
                             {"k": 4, "lambda": 0.3, "temperature": 100.0},
                             {"k": 8, "lambda": 0.3, "temperature": 10.0},
                             {"k": 8, "lambda": 0.3, "temperature": 100.0}]
    for bad, expected in (
            ({"k": [4], "lam": [0.3], "temperature": [10]}, "knn.tune: unknown key 'lam'"),
            ({"k": [4], "lambda": [0.3], "temperature": []},
             r"knn.tune.temperature: needs a list of numbers > 0, got \[\]"),
            ({"k": ["x"], "lambda": [0.3], "temperature": [10]},
             r"knn.tune.k: needs a list of whole numbers >= 1, got \['x'\]"),
            ({"k": [4], "lambda": [0, 0.3], "temperature": [10]},
             r"knn.tune.lambda: needs a list of numbers in \(0, 1\], got \[0, 0.3\]"),
            ({"k": [4], "lambda": [0.3, 0.3], "temperature": [10]},
             r"knn.tune.lambda: repeats a value in \[0.3, 0.3\]"),
            ({"k": [4], "lambda": [0.3]}, "knn.tune.temperature: needs a list")):
        with pytest.raises(NmtkdError, match=expected):
            KnnGrid.from_json(bad)
    with pytest.raises(NmtkdError, match="knn.tune.k: 8 neighbours asked of a datastore of 5"):
        grid.check(5)
    (tmp_path / "bad.json").write_text('{"k": 4}')
    with pytest.raises(NmtkdError, match="bad.json: not a kNN-MT tuning result"):
        read_tuned(tmp_path / "bad.json")
    (tmp_path / "good.json").write_text('{"k": 16, "lambda": 0.4, "temperature": 50}')
    assert read_tuned(tmp_path / "good.json") == tune.KnnSettings(16, 0.4, 50.0)


def test_a_resume_file_of_another_search_or_unreadable_is_not_resumed(tmp_path):
    points = GRID.points()
    fingerprint = {"model": "m", "points": points}
    partial = tmp_path / "t.json.partial"
    scored = [{**points[0], "bleu": 20.0}, {**points[1], "bleu": 21.5}]
    tune.write_partial(partial, fingerprint, scored)
    assert tune.read_partial(partial, fingerprint, points) == scored
    assert tune.read_partial(partial, {**fingerprint, "model": "other"}, points) == []
    assert tune.read_partial(partial, fingerprint, points[1:]) == []  # not a prefix
    for text in ("[1, 2]", "{\"of\": 1}", "{not json", "\udcff"):
        partial.write_text(text, encoding="utf-8", errors="surrogateescape")
        assert tune.read_partial(partial, fingerprint, points) == []
    assert tune.read_partial(tmp_path / "missing", fingerprint, points) == []


def test_translate_decodes_with_the_tuned_settings(tuning_inputs, tmp_path):
    directory, knn = tuning_inputs["directory"], tuning_inputs["knn"]
    (tmp_path / "tuned.json").write_text('{"k": 4, "lambda": 0.9, "temperature": 10}')
    common = ["translate", "--backend", "torch", "--model", str(tuning_inputs["model"]),
              "--spm", str(tuning_inputs["spm"]), "--input", str(directory / "valid.src"),
              "--beam-size", "3", "--batch-size", "8", "--max-length", "40", "--threads", "1",
              "--knn-datastore", str(knn.datastore), "--knn-index", str(knn.index)]
    tuned = nmtkd(*common, "--output", str(tmp_path / "tuned.txt"), "--knn-settings",
                  str(tmp_path / "tuned.json"))
    given = nmtkd(*common, "--output", str(tmp_path / "given.txt"), "--knn-k", "4",
                  "--knn-lambda", "0.9", "--knn-temperature", "10")
    assert tuned.returncode == 0 and given.returncode == 0, tuned.stderr + given.stderr
    assert read_lines(tmp_path / "tuned.txt") == read_lines(tmp_path / "given.txt")
    default = nmtkd(*common, "--output", str(tmp_path / "default.txt"))
    assert default.returncode == 0
    assert read_lines(tmp_path / "default.txt") != read_lines(tmp_path / "tuned.txt")
