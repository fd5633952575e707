"""kNN-MT and kNN-KD (../shared/docs/kd_methods.md §3): the datastore, the faiss search against
brute force, the kNN distribution and the kNN-KD loss by hand, kNN-MT decoding, the stored
targets, and a kNN-KD student that resumes after kill -9."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import assert_resumes_bit_identically, encode_pair, train_command

from nmtkd.batching import Batch, ParallelData
from nmtkd.beam_search import beam_search
from nmtkd.criteria import TrainingStep, build_criterion
from nmtkd.criteria.knn_kd import knn_kl
from nmtkd.errors import NmtkdError
from nmtkd.knn.datastore import Datastore, write_datastore
from nmtkd.knn.distribution import interpolate, knn_probabilities, merged_masses
from nmtkd.knn.index import Index, IndexSettings, build_index, write_index
from nmtkd.knn.retrieval import KnnScorer, KnnSettings
from nmtkd.knn.targets import write_targets
from nmtkd.model import ModelConfig, Transformer
from nmtkd.spm import BOS_ID, EOS_ID, PAD_ID
from nmtkd.teacher_signals import TeacherSignals

faiss = pytest.importorskip("faiss")


def brute_force(keys: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Squared L2 distances and rows of the k nearest keys, by numpy alone."""
    distances = ((queries[:, None, :].astype(np.float64) - keys[None].astype(np.float64)) ** 2
                 ).sum(-1)
    rows = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, rows, axis=1), rows


def saved_index(keys: np.ndarray, settings: IndexSettings, directory) -> Index:
    write_index(keys, settings, directory, {"datastore": "test"})
    return Index(directory)


# ---- search ------------------------------------------------------------------------------------
def test_exact_index_search_equals_brute_force(tmp_path):
    rng = np.random.default_rng(0)
    keys = rng.normal(size=(500, 16)).astype(np.float16)
    queries = rng.normal(size=(40, 16)).astype(np.float32)
    distances, rows = saved_index(keys, IndexSettings(type="flat"), tmp_path).search(queries, 8)
    expected_distances, expected_rows = brute_force(keys.astype(np.float32), queries, 8)
    assert np.array_equal(rows, expected_rows)
    assert np.allclose(distances, expected_distances, rtol=1e-4)


def test_ivfpq_finds_the_cluster_of_each_query(tmp_path):
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=10.0, size=(64, 16))
    keys = (np.repeat(centres, 50, axis=0) + rng.normal(scale=0.1, size=(3200, 16)))
    settings = IndexSettings(type="ivfpq", centroids=16, code_size=4, nprobe=4)
    index = saved_index(keys.astype(np.float16), settings, tmp_path)
    queries = centres[:20] + rng.normal(scale=0.1, size=(20, 16))
    _, rows = index.search(queries, 5)
    assert np.array_equal(rows // 50, np.repeat(np.arange(20)[:, None], 5, axis=1))
    assert index.meta["type"] == "ivfpq" and index.index.nprobe == 4


def test_index_settings_that_cannot_work_are_refused_by_key():
    keys = np.zeros((100, 16), dtype=np.float16)
    with pytest.raises(NmtkdError, match="knn.index.code_size: 5 does not divide"):
        build_index(keys, IndexSettings(type="ivfpq", code_size=5))
    with pytest.raises(NmtkdError, match="knn.index.centroids: 4096 centroids need"):
        build_index(keys, IndexSettings(type="ivfpq", code_size=4))
    with pytest.raises(NmtkdError, match="knn.index.type: 'hnsw' is not one of flat, ivfpq"):
        build_index(keys, IndexSettings(type="hnsw"))


# ---- the kNN distribution ----------------------------------------------------------------------
def test_knn_distribution_sums_duplicates_by_hand():
    values = torch.tensor([[5, 7, 5, -1]])  # the last neighbour was not found
    distances = torch.tensor([[0.0, 100.0, 200.0, 1.0]])
    p = knn_probabilities(values, distances, 100.0, 8)
    z = 1 + math.exp(-1) + math.exp(-2)
    expected = [0.0] * 8
    expected[5], expected[7] = (1 + math.exp(-2)) / z, math.exp(-1) / z
    assert p[0].tolist() == pytest.approx(expected)


def test_interpolation_by_hand_and_exact_at_lambda_0():
    log_mt = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    knn = torch.tensor([[0.0, 1.0, 0.0]])
    mixed = interpolate(log_mt, knn, 0.3).exp()
    assert mixed[0].tolist() == pytest.approx([0.35, 0.51, 0.14])
    assert torch.equal(interpolate(log_mt, knn, 0.0), log_mt)


# ---- the kNN-KD loss ---------------------------------------------------------------------------
def test_knn_kl_by_hand_with_duplicates():
    log_p = torch.full((1, 1, 4), math.log(0.25))  # a uniform student
    values = torch.tensor([[[1, 1, 2]]])
    negative_distances = torch.tensor([[[0.0, 0.0, -100 * math.log(2)]]])  # weights .4 .4 .2
    kl = knn_kl(log_p, values, negative_distances, 100.0, torch.ones(1, 1, dtype=torch.bool))
    assert float(kl) == pytest.approx(0.8 * math.log(0.8 / 0.25) + 0.2 * math.log(0.2 / 0.25))
    exact = torch.log(torch.tensor([[[1e-9, 0.8, 0.2, 1e-9]]]))
    assert float(knn_kl(exact, values, negative_distances, 100.0,
                        torch.ones(1, 1, dtype=torch.bool))) == pytest.approx(0.0, abs=1e-6)


def test_merged_masses_sum_the_weights_of_equal_values_in_any_order():
    by_hand = torch.tensor([[[0.1 + 0.3, 0.2 + 0.4, 0.1 + 0.3, 0.2 + 0.4, 0.0]]])
    values, weights = torch.tensor([[[7, 2, 7, 2, 5]]]), torch.tensor([[[0.1, 0.2, 0.3, 0.4, 0.0]]])
    assert torch.allclose(merged_masses(values, weights), by_hand)
    generator = torch.Generator().manual_seed(0)
    values = torch.randint(0, 6, (3, 4, 16), generator=generator)  # unsorted, many repeats
    weights = torch.rand(3, 4, 16, generator=generator)
    loops = torch.tensor([[[sum(float(w) for v, w in zip(row_v, row_w, strict=True) if v == value)
                            for value in row_v] for row_v, row_w in zip(vs, ws, strict=True)]
                          for vs, ws in zip(values, weights, strict=True)])
    assert torch.allclose(merged_masses(values, weights), loops, atol=1e-6)


class StoredTargets:
    """Duck-types the kNN targets' lookup with fixed neighbours."""

    def __init__(self, values, negative_distances):
        self.values, self.negative_distances = values, negative_distances

    def lookup(self, lines, width, k, device):
        return self.values[..., :k], self.negative_distances[..., :k]


def one_token_step(student_logits: torch.Tensor) -> TrainingStep:
    class Fixed(torch.nn.Module):
        def forward(self, source, target_in):
            return student_logits

    batch = Batch(source=torch.tensor([[4, EOS_ID]]), target_in=torch.tensor([[BOS_ID, 2]]),
                  target_out=torch.tensor([[2, PAD_ID]]), indices=[0], lines=[0])
    return TrainingStep(model=Fixed(), batch=batch, update=1)


def test_knn_kd_loss_is_smoothed_nll_plus_beta_times_kl_or_the_alpha_form():
    step = one_token_step(torch.zeros(1, 2, 4))  # uniform over 4 tokens; gold token 2
    targets = StoredTargets(torch.tensor([[[1, 1, 2], [0, 0, 0]]]),
                            torch.tensor([[[0.0, 0.0, -100 * math.log(2)], [0.0, 0.0, 0.0]]]))
    kl = 0.8 * math.log(0.8 / 0.25) + 0.2 * math.log(0.2 / 0.25)
    smoothed = math.log(4)  # (1 − ε)·NLL + ε·mean(−log p) with every −log p = log 4
    for spec, expected in (({}, smoothed + kl), ({"beta": 2.0}, smoothed + 2 * kl),
                           ({"alpha": 0.25}, 0.75 * smoothed + 0.25 * kl)):
        criterion = build_criterion({"name": "knn_kd", "k": 3, **spec})
        criterion.bind(knn_targets=targets)
        out = criterion(step)
        assert float(out.loss) == pytest.approx(expected)
        assert out.normaliser == 1 and out.terms["kl"] == pytest.approx(kl)


def test_knn_kd_refuses_beta_with_alpha_and_runs_only_with_its_targets():
    with pytest.raises(NmtkdError, match="either beta"):
        build_criterion({"name": "knn_kd", "beta": 2.0, "alpha": 0.5})
    criterion = build_criterion({"name": "knn_kd"})
    assert criterion.needs == {"knn_targets"} and criterion.signals_k == 64
    with pytest.raises(NmtkdError, match="--knn-targets"):
        criterion(one_token_step(torch.zeros(1, 2, 4)))


# ---- the datastore -----------------------------------------------------------------------------
def tiny_model(seed: int, vocab: int = 12) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(ModelConfig(vocab_size=vocab, d_model=16, heads=2, encoder_layers=1,
                                   decoder_layers=2, ffn_dim=32, dropout=0.0)).eval()


def random_corpus(seed: int, lines: int = 30, vocab: int = 12) -> ParallelData:
    rng = np.random.default_rng(seed)
    words = list(range(4, vocab))

    def sentence():
        return [int(w) for w in rng.choice(words, size=int(rng.integers(2, 7)))]

    return ParallelData([sentence() for _ in range(lines)], [sentence() for _ in range(lines)])


def last_ffn_input(model: Transformer, source: torch.Tensor, target_in: torch.Tensor):
    """The normalised input of the last decoder layer's feed-forward block, layer by layer."""
    memory, mask = model.encode(source)
    x = model.embed(target_in)
    for layer, memory_kv in zip(model.decoder_layers, model.memory_kv(memory), strict=True):
        x = x + layer.self_attention(layer.self_norm(x), causal=True)
        x = x + layer.cross_attention(layer.cross_norm(x), mask=mask, memory_kv=memory_kv)
        ffn_input = layer.ffn.norm(x)
        x = layer.ffn(x)
    return ffn_input, model.decoder_norm(x)


@pytest.mark.parametrize("state", ["final", "last_ffn_input"])
def test_datastore_keys_are_each_sentences_decoder_states_and_values_its_next_tokens(
        tmp_path, state):
    model, data = tiny_model(0), random_corpus(0)
    meta = write_datastore(model, data, len(data), state, 60, tmp_path / state,
                           torch.device("cpu"), {"model": "m", "corpus": "c"})
    store = Datastore(tmp_path / state)
    lengths = [len(t) + 1 for t in data.targets]
    assert meta["entries"] == len(store) == sum(lengths) and store.lengths.tolist() == lengths
    for line in (0, 7, 29):  # sentence by sentence, without padding or batching
        target = data.targets[line]
        rows = slice(store.offsets[line], store.offsets[line + 1])
        assert store.values[rows].tolist() == target + [EOS_ID]
        ffn_input, final = last_ffn_input(model, torch.tensor([data.sources[line]]),
                                          torch.tensor([[BOS_ID] + target]))
        expected = (final if state == "final" else ffn_input)[0].detach().numpy()
        assert np.allclose(store.keys[rows].astype(np.float32), expected, atol=2e-3)


def built(tmp_path, model=None, data=None, state="final"):
    model, data = model or tiny_model(0), data or random_corpus(0)
    write_datastore(model, data, len(data), state, 60, tmp_path / "store", torch.device("cpu"),
                    {"model": "m", "corpus": "c"})
    store = Datastore(tmp_path / "store")
    write_index(store.keys, IndexSettings(type="flat"), tmp_path / "index",
                {"datastore": "m", "corpus": "c", "state": state})
    return model, data, store, Index(tmp_path / "index")


# ---- kNN-MT decoding ---------------------------------------------------------------------------
def test_knn_mt_at_lambda_0_is_the_base_beam_search_exactly(tmp_path):
    model, data, store, index = built(tmp_path)
    sources = [data.sources[i][:-1] for i in range(6)]
    base = beam_search(model, sources, beam_size=3, max_length=12)
    scorer = KnnScorer(store, index, KnnSettings(k=4, lam=0.0, temperature=10.0))
    mixed = beam_search(model, sources, beam_size=3, max_length=12, scorer=scorer)
    assert scorer.queries > 0
    for ours, theirs in zip(base, mixed, strict=True):
        assert [h.tokens for h in ours] == [h.tokens for h in theirs]
        assert [h.score for h in ours] == [h.score for h in theirs]


def test_knn_mt_with_lambda_1_retrieves_a_training_target_from_its_own_datastore(tmp_path):
    model, data, store, index = built(tmp_path)
    scorer = KnnScorer(store, index, KnnSettings(k=1, lam=1.0, temperature=1.0))
    for line in (0, 5, 11):
        (best,), = beam_search(model, [data.sources[line][:-1]], beam_size=1, max_length=12,
                               scorer=scorer)
        assert best.tokens == data.targets[line]  # each step's nearest key is its own prefix's


def test_knn_settings_are_checked_against_the_datastore(tmp_path):
    _, _, store, index = built(tmp_path)
    other = built(tmp_path / "other", state="last_ffn_input")[3]
    with pytest.raises(NmtkdError, match="other/index: not the index of .*/store"):
        KnnScorer(store, other, KnnSettings())
    with pytest.raises(NmtkdError, match="knn.k: must be between 1 and the datastore's"):
        KnnScorer(store, index, KnnSettings(k=len(store) + 1))
    with pytest.raises(NmtkdError, match="knn.lambda"):
        KnnScorer(store, index, KnnSettings(lam=1.5))


# ---- kNN-KD targets ----------------------------------------------------------------------------
def test_stored_targets_line_up_with_the_training_tokens(tmp_path):
    _, data, store, index = built(tmp_path)
    write_targets(store, index, 4, True, tmp_path / "kept", {}, block=50)
    write_targets(store, index, 4, False, tmp_path / "excluded", {}, block=50)
    kept, excluded = TeacherSignals(tmp_path / "kept"), TeacherSignals(tmp_path / "excluded")
    assert kept.meta["kind"] == "knn" and kept.k == 4 and not (tmp_path / "kept.work").exists()
    # kept: each token's nearest neighbour is its own entry, value = the gold token, distance 0
    assert np.array_equal(kept.ids[:, 0], store.values)
    assert np.allclose(kept.logits[:, 0].astype(np.float32), 0.0, atol=1e-3)
    expected_distances, expected_rows = brute_force(store.keys.astype(np.float32),
                                                    store.keys.astype(np.float32), 5)
    # excluded: the next four by brute force (the own entry is the unique one at distance 0)
    assert np.all(expected_rows[:, 0] == np.arange(len(store)))
    assert np.array_equal(excluded.ids, store.values[expected_rows[:, 1:]])
    assert np.allclose(-excluded.logits.astype(np.float32), expected_distances[:, 1:],
                       rtol=2e-3, atol=1e-3)
    # the trainer's lookup gives a sentence's rows at its positions
    ids, values = kept.lookup([3], 10, 2, torch.device("cpu"))
    length = len(data.targets[3]) + 1
    assert ids[0, :length, 0].tolist() == data.targets[3] + [EOS_ID]
    assert ids[0, length:].abs().sum() == 0


def test_a_killed_target_search_resumes_where_it_stopped(tmp_path, monkeypatch):
    from nmtkd.knn import targets as module

    _, _, store, index = built(tmp_path)
    write_targets(store, index, 3, True, tmp_path / "straight", {}, block=40)
    real, calls = module.search_block, []

    def failing(*args):
        calls.append(args[2])
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed during the third block
        return real(*args)

    monkeypatch.setattr(module, "search_block", failing)
    with pytest.raises(KeyboardInterrupt):
        write_targets(store, index, 3, True, tmp_path / "resumed", {}, block=40)
    assert not (tmp_path / "resumed").exists()
    progress = json.loads((tmp_path / "resumed.work" / "progress.json").read_text())
    assert progress["done"] == 80
    monkeypatch.setattr(module, "search_block", lambda *args: calls.append(args[2]) or real(*args))
    write_targets(store, index, 3, True, tmp_path / "resumed", {}, block=40)
    assert calls[3] == 80  # the rerun started at the first unfinished block
    for name in ("ids.npy", "logits.npy", "lengths.npy"):
        assert np.array_equal(np.load(tmp_path / "straight" / name),
                              np.load(tmp_path / "resumed" / name))


# ---- the commands, and a kNN-KD student that resumes after kill -9 -----------------------------
def nmtkd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nmtkd.cli", *args], check=True,
                          capture_output=True, text=True)


def test_knn_kd_student_resumes_bit_identically_after_kill_9(synthetic, synthetic_spm,
                                                            trained_tiny, tmp_path):
    from nmtkd.spm import Tokenizer

    train = encode_pair(Tokenizer(synthetic_spm), *synthetic["train"], tmp_path)
    nmtkd("datastore", "--model", str(trained_tiny), "--train-src", str(train[0]),
          "--train-tgt", str(train[1]), "--spm", str(synthetic_spm), "--output",
          str(tmp_path / "store"), "--threads", "1")
    indexing = nmtkd("knn-index", "--datastore", str(tmp_path / "store"), "--output",
                     str(tmp_path / "index"), "--settings", '{"type": "flat"}')
    # faiss's loader names each build it tries at INFO; none of that reaches the job's log
    assert "faiss.loader" not in indexing.stderr and "ModuleNotFoundError" not in indexing.stderr
    nmtkd("knn-targets", "--datastore", str(tmp_path / "store"), "--index",
          str(tmp_path / "index"), "--k", "8", "--output", str(tmp_path / "targets"))
    assert Datastore(tmp_path / "store").meta["state"] == "final"
    settings = {"model": {"d_model": 32, "heads": 4, "encoder_layers": 1, "decoder_layers": 1,
                          "ffn_dim": 64, "dropout": 0.1},
                "training": {"max_tokens": 800, "max_updates": 30, "valid_interval": 30,
                             "save_interval": 5, "device": "cpu", "warmup": 10,
                             "loss": {"name": "knn_kd", "k": 8, "temperature": 10}}}

    def command(name):
        return [*train_command(synthetic, synthetic_spm, trained_tiny, settings,
                               tmp_path / name), "--knn-targets", str(tmp_path / "targets")]

    assert_resumes_bit_identically(command, tmp_path)
    summary = json.loads((tmp_path / "straight" / "training.json").read_text())
    assert summary["updates"] == 30


def test_knn_kd_without_targets_or_with_teacher_signals_fails_in_one_line(
        synthetic, synthetic_spm, trained_tiny, tmp_path):
    from nmtkd.spm import Tokenizer

    train = encode_pair(Tokenizer(synthetic_spm), *synthetic["train"], tmp_path)
    nmtkd("teacher-signals", "--model", str(trained_tiny), "--train-src", str(train[0]),
          "--train-tgt", str(train[1]), "--spm", str(synthetic_spm), "--k", "4", "--output",
          str(tmp_path / "signals"), "--threads", "1")
    settings = {"training": {"max_updates": 1, "device": "cpu",
                             "loss": {"name": "knn_kd", "k": 4}}}
    command = train_command(synthetic, synthetic_spm, trained_tiny, settings, tmp_path / "run")
    for extra, expected in (
            ([], "pass --knn-targets (made by nmtkd knn-targets)"),
            (["--knn-targets", str(tmp_path / "signals")],
             f"{tmp_path / 'signals'}: holds teacher signals, not kNN targets")):
        result = subprocess.run(command + extra, capture_output=True, text=True)
        assert result.returncode != 0
        assert result.stderr.strip().splitlines()[-1].endswith(expected)
        assert not (tmp_path / "run" / "model.pt").exists()

