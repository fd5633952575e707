import math

import pytest
import torch
import torch.nn.functional as F

from nmtkd.batching import Batch
from nmtkd.errors import NmtkdError
from nmtkd.losses import LabelSmoothedNLL, build_loss
from nmtkd.spm import PAD_ID


def batch_for(target_out):
    return Batch(source=torch.zeros(1, 1, dtype=torch.long), target_in=target_out.clone(),
                 target_out=target_out, indices=[0])


def test_label_smoothing_matches_hand_computation():
    logits = torch.tensor([[[2.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]])
    target = torch.tensor([[3, PAD_ID]])  # second position is padding and must not count
    out = LabelSmoothedNLL(label_smoothing=0.2)(logits, batch_for(target))
    log_z = math.log(math.exp(2) + 1 + 1 + math.exp(1))
    log_p = [2 - log_z, -log_z, -log_z, 1 - log_z]
    expected = 0.8 * -log_p[3] + 0.2 * -sum(log_p) / 4
    assert out.tokens == 1
    assert float(out.loss) == pytest.approx(expected, abs=1e-6)
    assert float(out.nll) == pytest.approx(-log_p[3], abs=1e-6)


def test_zero_smoothing_equals_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11)
    target = torch.randint(1, 11, (2, 5))
    target[1, 3:] = PAD_ID
    out = LabelSmoothedNLL(0.0)(logits, batch_for(target))
    expected = F.cross_entropy(logits.view(-1, 11), target.view(-1), ignore_index=PAD_ID,
                               reduction="sum")
    assert float(out.loss) == pytest.approx(float(expected), rel=1e-6)
    assert out.tokens == 8


def test_registry_errors_name_the_key():
    with pytest.raises(NmtkdError, match="loss.name: unknown loss 'wordkd'"):
        build_loss({"name": "wordkd"})
    with pytest.raises(NmtkdError, match="loss 'nll'"):
        build_loss({"name": "nll", "temperature": 2})
    with pytest.raises(NmtkdError, match="label_smoothing"):
        build_loss({"name": "nll", "label_smoothing": 1.5})
