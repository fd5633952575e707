"""CTranslate2 export: the exported model decodes and scores like the project's torch model."""

import ctranslate2
import pytest

from nmtkd.checkpoint import load_model
from nmtkd.decoding import greedy_translate_ids, score_targets
from nmtkd.errors import NmtkdError
from nmtkd.export import export_model
from nmtkd.spm import Tokenizer
from nmtkd.textio import read_lines
from nmtkd.translate import DecodeOptions, translate_file


@pytest.fixture(scope="module")
def exported(trained_tiny, synthetic_spm, tmp_path_factory):
    directory = tmp_path_factory.mktemp("ct2")
    export_model(trained_tiny, synthetic_spm, directory / "float32", "float32")
    export_model(trained_tiny, synthetic_spm, directory / "int8", "int8")
    return directory


def test_directory_is_self_contained(exported):
    names = sorted(p.name for p in (exported / "float32").iterdir())
    # .nmtkd-output marks the directory as an export, which a later export may replace
    assert names == [".nmtkd-output", "config.json", "model.bin", "shared_vocabulary.json",
                     "spm.model"]
    assert (exported / "int8" / "model.bin").stat().st_size < (
        exported / "float32" / "model.bin").stat().st_size * 0.6


def test_greedy_output_and_scores_match_torch(exported, trained_tiny, synthetic_spm, synthetic):
    model, _ = load_model(trained_tiny)
    tokenizer = Tokenizer(synthetic_spm)
    sources = read_lines(synthetic["valid"][0])
    references = read_lines(synthetic["valid"][1])
    source_ids = tokenizer.encode_ids(sources)
    torch_ids = greedy_translate_ids(model, source_ids, max_length=100)
    translator = ctranslate2.Translator(str(exported / "float32"), device="cpu")
    results = translator.translate_batch(tokenizer.encode_pieces(sources), beam_size=1,
                                         max_decoding_length=100)
    ct2_ids = [[tokenizer.processor.piece_to_id(p) for p in r.hypotheses[0]] for r in results]
    identical = sum(a == b for a, b in zip(torch_ids, ct2_ids, strict=True)) / len(sources)
    assert identical >= 0.99
    # the trained model is not degenerate: its greedy output is mostly right
    hyps = tokenizer.decode_ids(torch_ids)
    assert sum(h == r for h, r in zip(hyps, references, strict=True)) > len(sources) * 0.3

    targets = tokenizer.encode_ids(references)
    torch_scores = score_targets(model, source_ids, targets)
    ct2_scores = translator.score_batch(tokenizer.encode_pieces(sources),
                                        tokenizer.encode_pieces(references))
    worst = max(abs(a - b) for t, c in zip(torch_scores, ct2_scores, strict=True)
                for a, b in zip(t, c.log_probs, strict=True))
    assert all(len(t) == len(c.log_probs) for t, c in zip(torch_scores, ct2_scores, strict=True))
    assert worst < 1e-3


def test_translate_keeps_input_order_and_writes_nbest(exported, synthetic, tmp_path):
    sources = read_lines(synthetic["test"][0])[:60]
    (tmp_path / "in.txt").write_text("\n".join(sources) + "\n")
    options = DecodeOptions(beam_size=4, nbest=3, batch_size=7, max_length=100, threads=2)
    translate_file(exported / "float32", tmp_path / "in.txt", tmp_path / "out.txt", options,
                   tmp_path / "nbest.tsv")
    batched = read_lines(tmp_path / "out.txt")
    one_by_one = []
    for index, sentence in enumerate(sources[:12]):
        (tmp_path / f"one{index}.txt").write_text(sentence + "\n")
        translate_file(exported / "float32", tmp_path / f"one{index}.txt",
                       tmp_path / f"one{index}.out",
                       DecodeOptions(beam_size=4, batch_size=1, max_length=100))
        one_by_one += read_lines(tmp_path / f"one{index}.out")
    assert batched[:12] == one_by_one
    rows = [line.split("\t") for line in read_lines(tmp_path / "nbest.tsv")]
    assert len(rows) == 3 * len(sources)
    assert [int(r[0]) for r in rows[:6]] == [0, 0, 0, 1, 1, 1]
    assert [int(r[1]) for r in rows[:6]] == [0, 1, 2, 0, 1, 2]
    for sentence in range(len(sources)):
        scores = [float(r[2]) for r in rows[3 * sentence:3 * sentence + 3]]
        assert scores == sorted(scores, reverse=True)
        assert rows[3 * sentence][3] == batched[sentence]


def test_nbest_larger_than_the_beam_comes_from_a_wider_second_search(exported, synthetic,
                                                                     tmp_path):
    sources = synthetic["test"][0]
    translate_file(exported / "float32", sources, tmp_path / "best", DecodeOptions(
        beam_size=2, nbest=3, max_length=100, threads=2), tmp_path / "nbest.tsv")
    translate_file(exported / "float32", sources, tmp_path / "beam2", DecodeOptions(
        beam_size=2, max_length=100, threads=2))
    translate_file(exported / "float32", sources, tmp_path / "beam3", DecodeOptions(
        beam_size=3, nbest=3, max_length=100, threads=2), tmp_path / "nbest3.tsv")
    # the 1-best is the beam-2 search's; the 3-best list is a beam-3 search's
    assert read_lines(tmp_path / "best") == read_lines(tmp_path / "beam2")
    assert read_lines(tmp_path / "nbest.tsv") == read_lines(tmp_path / "nbest3.tsv")
    assert len(read_lines(tmp_path / "nbest.tsv")) == 3 * len(read_lines(sources))


def test_int8_model_translates_close_to_float32(exported, synthetic, tmp_path):
    options = DecodeOptions(beam_size=2, max_length=100, threads=2)
    translate_file(exported / "float32", synthetic["test"][0], tmp_path / "f32", options)
    translate_file(exported / "int8", synthetic["test"][0], tmp_path / "i8", options)
    f32, i8 = read_lines(tmp_path / "f32"), read_lines(tmp_path / "i8")
    assert sum(a == b for a, b in zip(f32, i8, strict=True)) >= 0.8 * len(f32)


def test_bad_inputs(exported, trained_tiny, tmp_path):
    (tmp_path / "x").write_text("hello\n")
    with pytest.raises(NmtkdError, match="not a CTranslate2 model directory"):
        translate_file(tmp_path, tmp_path / "x", tmp_path / "y", DecodeOptions())
    assert not (tmp_path / "y").exists()
    with pytest.raises(NmtkdError, match="missing.txt: file not found"):
        translate_file(exported / "float32", tmp_path / "missing.txt", tmp_path / "y",
                       DecodeOptions())
    with pytest.raises(NmtkdError, match="n-best"):
        DecodeOptions(beam_size=2, nbest=0)
    with pytest.raises(NmtkdError, match="quantization must be one of"):
        export_model(trained_tiny, exported / "float32" / "spm.model", tmp_path / "o", "int3")
    assert not (tmp_path / "o").exists()


def test_ctranslate2_stops_exactly_at_the_forced_length(exported, synthetic):
    """The contract the fixed-length speed protocol relies on: with min = max decoding length,
    every hypothesis of a beam or greedy search has exactly that many tokens."""
    import sentencepiece

    model = exported / "float32"
    pieces = sentencepiece.SentencePieceProcessor(model_file=str(model / "spm.model"))
    batch = pieces.encode(read_lines(synthetic["test"][0])[:8], out_type=str)
    translator = ctranslate2.Translator(str(model), intra_threads=1)
    for beam in (1, 3):
        results = translator.translate_batch(batch, beam_size=beam, min_decoding_length=9,
                                             max_decoding_length=9)
        assert [len(r.hypotheses[0]) for r in results] == [9] * 8
