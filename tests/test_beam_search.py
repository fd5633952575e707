"""The torch beam search: a hand-derived search on scripted distributions, and agreement with
CTranslate2's beam search on the same trained model."""

from __future__ import annotations

import math
import subprocess
import sys

import ctranslate2
import pytest
import torch

from nmtkd.beam_search import beam_search
from nmtkd.checkpoint import load_model
from nmtkd.decoding import score_targets
from nmtkd.export import export_model
from nmtkd.spm import BOS_ID, EOS_ID, Tokenizer
from nmtkd.textio import read_lines

A, B = 4, 5  # two words of a six-token vocabulary (pad, unk, <s>, </s>, a, b)
# next-word probabilities after each prefix; every other token gets 1e-9
SCRIPT = {
    (): {A: 0.6, B: 0.4},
    (A,): {EOS_ID: 0.2, A: 0.41, B: 0.39},
    (B,): {EOS_ID: 0.9, A: 0.05, B: 0.05},
    (A, A): {EOS_ID: 0.9, A: 0.05, B: 0.05},
    (A, B): {EOS_ID: 0.8, A: 0.1, B: 0.1},
}


class ScriptedModel:
    """Duck-types the Transformer's decoding interface with SCRIPT's distributions; the
    'cache' holds each beam's prefix, so the search's reordering of caches is exercised."""

    decoder_layers = [None]

    def eval(self) -> None:
        pass

    def encode(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(source.size(0), 1, 1), torch.ones(source.size(0), 1, 1, 1).bool()

    def memory_kv(self, memory: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(memory, memory)]

    def decode(self, target_in, memory_kv, memory_mask, caches, offset) -> torch.Tensor:
        cache = caches[0]
        prefix = target_in if "key" not in cache else torch.cat([cache["key"], target_in], 1)
        cache["key"] = prefix
        logits = torch.full((prefix.size(0), 1, 6), math.log(1e-9))
        for row, tokens in enumerate(prefix.tolist()):
            assert tokens[0] == BOS_ID
            for word, probability in SCRIPT.get(tuple(tokens[1:]), {EOS_ID: 1.0}).items():
                logits[row, 0, word] = math.log(probability)
        return logits

    def decode_with_states(self, target_in, memory_kv, memory_mask, caches, offset,
                           state=None) -> tuple[torch.Tensor, None]:
        return self.decode(target_in, memory_kv, memory_mask, caches, offset), None


def test_scripted_search_with_and_without_length_penalty():
    model = ScriptedModel()
    # step 1, the 2·beam best: b</s> .36, aa .246, ab .234, a</s> .12. b</s> finishes and its
    # slot goes to ab; without a length penalty the search stops there: b, log .36
    (best,), = beam_search(model, [[7]], beam_size=2, length_penalty=0.0)
    assert best.tokens == [B] and best.score == pytest.approx(math.log(0.36), abs=1e-6)
    # with length penalty 1 it goes on: aa</s> .2214 and ab</s> .1872 finish at step 2; the
    # length counts the </s>: log(.2214)/3 = -0.503 beats log(.36)/2 = -0.511, which beats
    # log(.1872)/3 = -0.559
    hyps, = beam_search(model, [[7]], beam_size=2, length_penalty=1.0, nbest=2)
    assert [h.tokens for h in hyps] == [[A, A], [B]]
    assert [h.score for h in hyps] == pytest.approx([math.log(0.2214) / 3,
                                                     math.log(0.36) / 2], abs=1e-6)
    # greedy (beam 1): a .6, then a .41, then </s>
    (greedy,), = beam_search(model, [[7]], beam_size=1, length_penalty=0.0)
    assert greedy.tokens == [A, A] and greedy.score == pytest.approx(math.log(0.2214), abs=1e-6)


def test_max_length_finishes_every_beam():
    (best,), = beam_search(ScriptedModel(), [[7]], beam_size=2, max_length=1,
                           length_penalty=0.0)
    assert best.tokens == [A] and best.score == pytest.approx(math.log(0.6), abs=1e-6)


@pytest.fixture(scope="module")
def exported_tiny(trained_tiny, synthetic_spm, tmp_path_factory):
    directory = tmp_path_factory.mktemp("beam_ct2") / "float32"
    export_model(trained_tiny, synthetic_spm, directory, "float32")
    return directory


@pytest.mark.parametrize("length_penalty", [1.0, 0.0])
def test_same_one_best_as_ctranslate2(trained_tiny, exported_tiny, synthetic, synthetic_spm,
                                      length_penalty):
    model, _ = load_model(trained_tiny)
    tokenizer = Tokenizer(synthetic_spm)
    lines = read_lines(synthetic["test"][0])
    sources = tokenizer.encode_ids(lines)
    ours = [h[0].tokens for h in beam_search(model, sources, beam_size=5, max_length=100,
                                             length_penalty=length_penalty)]
    translator = ctranslate2.Translator(str(exported_tiny), device="cpu")
    theirs = translator.translate_batch(
        tokenizer.encode_pieces(lines), beam_size=5, max_decoding_length=100,
        length_penalty=length_penalty)
    theirs = [[tokenizer.processor.piece_to_id(p) for p in r.hypotheses[0]] for r in theirs]
    differ = [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
    assert len(differ) <= 0.03 * len(lines), f"{len(differ)} of {len(lines)} differ"
    # any difference is a near-tie: both outputs score the same under the torch model
    for i in differ:
        ours_score, theirs_score = (sum(score_targets(model, [sources[i]], [t])[0])
                                    / (len(t) + 1) ** length_penalty  # the </s> counts
                                    for t in (ours[i], theirs[i]))
        assert abs(ours_score - theirs_score) < 1e-3, (i, ours[i], theirs[i])


def run_translate(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nmtkd.cli", "translate", *map(str, args)],
                          capture_output=True, text=True)


def test_translate_command_with_the_torch_backend(trained_tiny, exported_tiny, synthetic,
                                                  synthetic_spm, tmp_path):
    source = synthetic["test"][0]
    common = ["--input", source, "--beam-size", "4", "--nbest", "3", "--max-length", "100"]
    torch_run = run_translate("--backend", "torch", "--model", trained_tiny, "--spm",
                              synthetic_spm, "--output", tmp_path / "t.txt", "--nbest-output",
                              tmp_path / "t.tsv", *common)
    assert torch_run.returncode == 0, torch_run.stderr
    ct2_run = run_translate("--model", exported_tiny, "--output", tmp_path / "c.txt",
                            "--nbest-output", tmp_path / "c.tsv", *common)
    assert ct2_run.returncode == 0, ct2_run.stderr
    ours, theirs = read_lines(tmp_path / "t.txt"), read_lines(tmp_path / "c.txt")
    assert len(ours) == len(theirs) == len(read_lines(source))
    assert sum(a == b for a, b in zip(ours, theirs, strict=True)) >= 0.97 * len(ours)
    table = [line.split("\t") for line in read_lines(tmp_path / "t.tsv")]
    assert len(table) == 3 * len(ours)
    assert [row[3] for row in table if row[1] == "0"] == ours  # rank 0 is the 1-best
    refused = run_translate("--backend", "torch", "--model", trained_tiny, "--input", source,
                            "--output", tmp_path / "x.txt")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == ("nmtkd translate: error: --backend torch needs --spm "
                                      "(the model's SentencePiece model)")
    assert not (tmp_path / "x.txt").exists()
