"""Runaway outputs and the source-relative length bound of decoding."""

import pytest

from nmtkd.decoding import length_bound
from nmtkd.runaway import repeats_an_ngram, runaway_share, runs_away


def test_an_output_runs_away_when_too_long_or_repeating():
    source = "a dog runs"  # 3 words: the limit is 2 * 3 + 10 = 16 words
    assert not runs_away("ein Hund rennt über die Wiese", source)
    assert runs_away(" ".join(f"w{i}" for i in range(17)), source)  # 17 > 16, no repeats
    assert not runs_away(" ".join(f"w{i}" for i in range(16)), source)
    looping = "der Hund und der Hund und der Hund und der Hund"  # "der Hund und der" x3
    assert repeats_an_ngram(looping) and runs_away(looping, source)
    assert not repeats_an_ngram("der Hund und der Hund und der Hund")  # that 4-gram twice
    assert runaway_share(["ok", looping, "ok", "ok"], [source] * 4) == pytest.approx(25.0)


def test_the_length_bound_is_fairseqs_for_the_longest_source_of_a_batch():
    assert length_bound([10, 20], 256, 1.2, 10) == 34  # ceil(1.2 * 20 + 10)
    assert length_bound([300], 256, 1.2, 10) == 256  # never above max_length
    assert length_bound([5], 256, 0.0, 0) == 256  # switched off
    assert length_bound([1], 256, 0.5, 0) == 1  # ceil(0.5) = 1


def test_both_decoders_stop_each_batch_at_the_bound(synthetic, synthetic_spm, trained_tiny,
                                                    tmp_path):
    from nmtkd.export import export_model
    from nmtkd.spm import Tokenizer
    from nmtkd.textio import read_lines, write_lines
    from nmtkd.translate import DecodeOptions, translate_file

    source = tmp_path / "src"
    write_lines(source, read_lines(synthetic["test"][0])[:40])
    export_model(trained_tiny, synthetic_spm, tmp_path / "ct2", "float32")
    tokenizer = Tokenizer(synthetic_spm)
    for backend, model in (("ctranslate2", tmp_path / "ct2"), ("torch", trained_tiny)):
        lengths = {}
        for label, bound in (("free", (0.0, 0)), ("bounded", (0.0, 3))):
            options = DecodeOptions(beam_size=2, batch_size=8, max_length=60,
                                    max_len_a=bound[0], max_len_b=bound[1])
            output = tmp_path / f"{backend}.{label}"
            translate_file(model, source, output, options, backend=backend, spm=synthetic_spm)
            lengths[label] = [len(p) for p in tokenizer.encode_pieces(read_lines(output))]
        assert max(lengths["free"]) > 3, backend  # the synthetic targets are longer
        assert max(lengths["bounded"]) <= 3, backend  # 0·|x| + 3 pieces at most
