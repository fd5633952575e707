"""The speed protocol: a warm-up, interleaved timed rounds, the median and the spread."""

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest

from nmtkd import speed
from nmtkd.export import export_model
from nmtkd.textio import read_lines, write_lines
from nmtkd.translate import DecodeOptions, translate_lines


def test_rounds_are_interleaved_and_start_at_a_different_model_each_time(monkeypatch):
    calls = []
    monkeypatch.setattr(speed, "translate_lines",
                        lambda translator, tokenizer, lines, options, progress: calls.append(
                            translator))
    jobs = {name: (name, None, DecodeOptions()) for name in ("a", "b", "c")}
    seconds = speed.timed_rounds(jobs, ["x"], repeats=4)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert {name: len(times) for name, times in seconds.items()} == {"a": 4, "b": 4, "c": 4}


def test_speed_record_takes_the_median_and_the_spread(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"x" * 10)
    record = speed.speed_record(120, 10, [2.0, 6.0, 3.0], (tmp_path, "int8"))
    assert record["median_seconds"] == 3.0 and record["tokens_per_second"] == 40.0
    assert record["sentences_per_second"] == pytest.approx(10 / 3)
    assert record["spread"] == 3.0 and record["model_bytes"] == 10


def test_models_measured_together(synthetic, synthetic_spm, trained_tiny, tmp_path):
    source = tmp_path / "src"
    write_lines(source, read_lines(synthetic["test"][0])[:60])
    export_model(trained_tiny, synthetic_spm, tmp_path / "ct2", "float32")
    models = {"first": (tmp_path / "ct2", "default"), "second": (tmp_path / "ct2", "int8")}
    report = speed.measure_speeds(models, source, tmp_path / "speed.json",
                                  DecodeOptions(beam_size=2, batch_size=16, max_length=60),
                                  repeats=2, sentences=40)
    assert json.loads((tmp_path / "speed.json").read_text()) == report
    assert report["sentences"] == 40 and report["repeats"] == 2
    for name, result in report["models"].items():
        assert len(result["seconds"]) == 2 and result["spread"] >= 1.0, name
        assert result["tokens_per_second"] == pytest.approx(
            result["target_tokens"] / result["median_seconds"])
    assert report["models"]["second"]["compute_type"] == "int8"
    for result in report["models"].values():  # a = b = 0: every sentence runs to max_length
        assert result["fixed"]["target_tokens"] == 40 * 60 and len(result["fixed"]["seconds"]) == 2


def test_fixed_lengths_force_each_batch_to_its_bound(monkeypatch):
    calls = []

    class Translator:
        def translate_batch(self, batch, **options):
            calls.append((len(batch), options["min_decoding_length"],
                          options["max_decoding_length"]))
            return [FakeResult() for _ in batch]

    class FakeResult:
        def result(self):
            return SimpleNamespace(hypotheses=[["x"]], scores=[0.0])

    class Pieces:
        def encode_pieces(self, lines):
            return [line.split() for line in lines]

        def decode_pieces(self, hypotheses):
            return [" ".join(h) for h in hypotheses]

    lines = ["a b c d e", "a b", "a", "a b c"]
    options = DecodeOptions(batch_size=2, max_len_a=1.5, max_len_b=2, fixed_length=True)
    translate_lines(Translator(), Pieces(), lines, options, progress=False)
    # batches by length, longest first: (5, 3) pieces -> ceil(1.5·5 + 2) = 10; (2, 1) -> 5
    assert calls == [(2, 10, 10), (2, 5, 5)]
    assert speed.fixed_length_tokens([5, 2, 1, 3], options) == 2 * 10 + 2 * 5
    translate_lines(Translator(), Pieces(), lines, replace(options, fixed_length=False),
                    progress=False)
    assert calls[2:] == [(2, 0, 10), (2, 0, 5)]  # free decoding: </s> whenever the model says
