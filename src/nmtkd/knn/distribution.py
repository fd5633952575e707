"""The kNN distribution and its interpolation with the model's (kNN-MT, Khandelwal et al. 2021;
the kNN-KD soft target, Yang et al. 2022):

  p_kNN(v) = Σ_i 1[v_i = v]·exp(−d_i/T) / Σ_i exp(−d_i/T)      (duplicate values summed)
  p(v)     = λ·p_kNN(v) + (1 − λ)·p_MT(v)

A neighbour that the index did not find (row −1, distance +inf) gets no mass.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def neighbour_weights(distances: Tensor, temperature: float) -> Tensor:
    """softmax(−d/T) over the last axis [..., k], in float32; a row of only missing neighbours
    (all +inf) gets weights 0."""
    weights = F.softmax(-distances.float() / temperature, dim=-1)
    return torch.nan_to_num(weights, nan=0.0)


def knn_probabilities(values: Tensor, distances: Tensor, temperature: float,
                      vocab_size: int) -> Tensor:
    """p_kNN over the vocabulary [..., vocab] from the neighbours' values and squared L2
    distances [..., k]; missing neighbours have value < 0."""
    missing = values < 0
    weights = neighbour_weights(distances.masked_fill(missing, math.inf), temperature)
    dense = torch.zeros(*values.shape[:-1], vocab_size, dtype=torch.float32,
                        device=values.device)
    return dense.scatter_add_(-1, values.clamp(min=0).long(), weights)


def merged_masses(values: Tensor, weights: Tensor) -> Tensor:
    """Per neighbour i, the kNN mass of its value: Σ_j 1[v_j = v_i]·w_j  [..., k].
    Sorting each row groups equal values, so this costs k·log k per token, not k²."""
    ordered, order = values.sort(dim=-1)
    ordered_weights = weights.gather(-1, order)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    group = starts.long().cumsum(dim=-1) - 1
    group_masses = torch.zeros_like(ordered_weights).scatter_add_(-1, group, ordered_weights)
    return torch.empty_like(ordered_weights).scatter_(-1, order, group_masses.gather(-1, group))


def interpolate(model_log_probs: Tensor, knn_probs: Tensor, lam: float) -> Tensor:
    """log(λ·p_kNN + (1 − λ)·p_MT), as a log-sum-exp of the two log terms (the reference's
    form): at λ = 0 it is the model's log-probabilities exactly."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    model_term = model_log_probs + math.log1p(-lam) if lam < 1 else torch.full_like(
        model_log_probs, -math.inf)
    knn_term = knn_probs.log() + (math.log(lam) if lam > 0 else -math.inf)
    return torch.logaddexp(model_term, knn_term)
