import torch

from nmtkd.batching import pad
from nmtkd.model import ModelConfig, Transformer, sinusoid_table
from nmtkd.spm import BOS_ID


def make_model(seed=0):
    torch.manual_seed(seed)
    model = Transformer(ModelConfig(vocab_size=50, d_model=32, heads=4, encoder_layers=2,
                                    decoder_layers=2, ffn_dim=64, dropout=0.0))
    return model.eval()


def test_source_padding_does_not_change_outputs():
    model = make_model()
    short, long = [5, 6, 7, 3], [8, 9, 10, 11, 12, 13, 3]
    target = torch.tensor([[BOS_ID, 20, 21]])
    alone = model(torch.tensor([short]), target)
    batched = model(pad([short, long]), target.repeat(2, 1))
    torch.testing.assert_close(alone[0], batched[0], atol=1e-5, rtol=1e-5)


def test_decoder_is_causal():
    model = make_model()
    source = torch.tensor([[5, 6, 7, 3]])
    first = model(source, torch.tensor([[BOS_ID, 20, 21, 22]]))
    second = model(source, torch.tensor([[BOS_ID, 20, 30, 40]]))
    torch.testing.assert_close(first[:, :2], second[:, :2])
    assert not torch.allclose(first[:, 2:], second[:, 2:])


def test_incremental_decoding_equals_full_forward():
    model = make_model()
    source = torch.tensor([[5, 6, 7, 3], [8, 9, 3, 0]])
    target = torch.tensor([[BOS_ID, 20, 21, 22], [BOS_ID, 23, 24, 25]])
    full = model(source, target)
    memory, mask = model.encode(source)
    memory_kv = model.memory_kv(memory)
    caches = [{} for _ in model.decoder_layers]
    steps = [model.decode(target[:, i:i + 1], memory_kv, mask, caches, offset=i)
             for i in range(target.size(1))]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_sinusoid_layout_is_sin_then_cos():
    table = sinusoid_table(10, 8)
    assert table.shape == (10, 8)
    assert torch.allclose(table[0, :4], torch.zeros(4)) and torch.allclose(table[0, 4:],
                                                                           torch.ones(4))
    assert abs(float(table[1, 0]) - float(torch.sin(torch.tensor(1.0)))) < 1e-6


def test_embeddings_are_shared_with_the_output_projection():
    model = make_model()
    source = torch.tensor([[5, 3]])
    target = torch.tensor([[BOS_ID]])
    before = model(source, target)
    with torch.no_grad():
        model.embedding.weight[17] += 1.0
    after = model(source, target)
    changed = (after - before).abs().squeeze()
    assert changed[17] > changed[18]
