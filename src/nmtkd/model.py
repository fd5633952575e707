"""Pre-norm encoder-decoder Transformer with shared embeddings and sinusoidal positions.

The layout mirrors CTranslate2's TransformerSpec (fused QKV for self-attention, fused KV for
cross-attention, final layer norms) so that export is a one-to-one copy of tensors.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmtkd.spm import PAD_ID

LAYER_NORM_EPS = 1e-5
# Decoder states a kNN datastore can key on: the last layer's output after the final norm
# (the input of the output projection; kNN-KD's code) and the normalised input of the last
# layer's feed-forward block (the official kNN-MT's `last_ffn_input`).
DECODER_STATES = ("final", "last_ffn_input")


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    d_model: int = 256
    heads: int = 4
    encoder_layers: int = 3
    decoder_layers: int = 3
    ffn_dim: int = 1024
    dropout: float = 0.1
    attention_dropout: float = 0.0
    max_positions: int = 1024

    def __post_init__(self) -> None:
        if self.d_model % self.heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by heads={self.heads}")

    def to_dict(self) -> dict:
        return asdict(self)


def sinusoid_table(positions: int, dim: int) -> Tensor:
    """Sinusoids laid out as [sin | cos] halves (the fairseq / CTranslate2 layout)."""
    half = dim // 2
    scale = math.log(10000.0) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -scale)
    angles = torch.arange(positions, dtype=torch.float32)[:, None] * freqs[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        table = torch.cat([table, torch.zeros(positions, 1)], dim=1)
    return table


class MultiHeadAttention(nn.Module):
    def __init__(self, d_model: int, heads: int, dropout: float, cross: bool):
        super().__init__()
        self.heads, self.cross, self.dropout = heads, cross, dropout
        if cross:
            self.query = nn.Linear(d_model, d_model)
            self.key_value = nn.Linear(d_model, 2 * d_model)
        else:
            self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def _split(self, x: Tensor) -> Tensor:
        batch, length, dim = x.shape
        return x.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)

    def project_memory(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        key, value = self.key_value(memory).chunk(2, dim=-1)
        return self._split(key), self._split(value)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, memory_kv: tuple[Tensor, Tensor] | None = None,
        cache: dict[str, Tensor] | None = None, causal: bool = False,
    ) -> Tensor:
        if self.cross:
            query = self._split(self.query(x))
            key, value = memory_kv  # type: ignore[misc]
        else:
            query, key, value = (self._split(t) for t in self.qkv(x).chunk(3, dim=-1))
            if cache is not None:
                if "key" in cache:
                    key = torch.cat([cache["key"], key], dim=2)
                    value = torch.cat([cache["value"], value], dim=2)
                cache["key"], cache["value"] = key, value
        attn = F.scaled_dot_product_attention(
            query, key, value, attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal and mask is None and cache is None,
        )
        batch, _, length, _ = attn.shape
        return self.out(attn.transpose(1, 2).reshape(batch, length, -1))


class FeedForward(nn.Module):
    def __init__(self, d_model: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_model, eps=LAYER_NORM_EPS)
        self.inner = nn.Linear(d_model, ffn_dim)
        self.outer = nn.Linear(ffn_dim, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.dropout(self.outer(self.dropout(F.relu(self.inner(self.norm(x))))))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.d_model, eps=LAYER_NORM_EPS)
        self.attention = MultiHeadAttention(cfg.d_model, cfg.heads, cfg.attention_dropout, False)
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_dim, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = x + self.dropout(self.attention(self.norm(x), mask=mask))
        return self.ffn(x)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.self_norm = nn.LayerNorm(cfg.d_model, eps=LAYER_NORM_EPS)
        self.self_attention = MultiHeadAttention(cfg.d_model, cfg.heads, cfg.attention_dropout,
                                                 False)
        self.cross_norm = nn.LayerNorm(cfg.d_model, eps=LAYER_NORM_EPS)
        self.cross_attention = MultiHeadAttention(cfg.d_model, cfg.heads, cfg.attention_dropout,
                                                  True)
        self.ffn = FeedForward(cfg.d_model, cfg.ffn_dim, cfg.dropout)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: Tensor, memory_kv: tuple[Tensor, Tensor], memory_mask: Tensor,
        self_mask: Tensor | None = None, cache: dict[str, Tensor] | None = None,
    ) -> Tensor:
        x = x + self.dropout(self.self_attention(self.self_norm(x), mask=self_mask, cache=cache,
                                                 causal=True))
        x = x + self.dropout(self.cross_attention(self.cross_norm(x), mask=memory_mask,
                                                  memory_kv=memory_kv))
        return self.ffn(x)


def padding_mask(tokens: Tensor) -> Tensor:
    """Boolean attention mask [batch, 1, 1, src_len]: True where attention is allowed."""
    return (tokens != PAD_ID)[:, None, None, :]


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=PAD_ID)
        nn.init.normal_(self.embedding.weight, std=cfg.d_model**-0.5)
        with torch.no_grad():
            self.embedding.weight[PAD_ID].zero_()
        self.register_buffer("positions", sinusoid_table(cfg.max_positions, cfg.d_model),
                             persistent=False)
        self.embed_scale = math.sqrt(cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.encoder_norm = nn.LayerNorm(cfg.d_model, eps=LAYER_NORM_EPS)
        self.decoder_layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.decoder_norm = nn.LayerNorm(cfg.d_model, eps=LAYER_NORM_EPS)
        for name, param in self.named_parameters():
            if param.dim() == 2 and "embedding" not in name:
                nn.init.xavier_uniform_(param)

    def embed(self, tokens: Tensor, offset: int = 0) -> Tensor:
        length = tokens.size(1)
        if offset + length > self.cfg.max_positions:
            raise ValueError(f"sequence of {offset + length} tokens exceeds max_positions="
                             f"{self.cfg.max_positions}")
        positions = self.positions[offset:offset + length]
        return self.dropout(self.embedding(tokens) * self.embed_scale + positions)

    def encode(self, source: Tensor) -> tuple[Tensor, Tensor]:
        mask = padding_mask(source)
        x = self.embed(source)
        for layer in self.encoder_layers:
            x = layer(x, mask)
        return self.encoder_norm(x), mask

    def memory_kv(self, memory: Tensor) -> list[tuple[Tensor, Tensor]]:
        return [layer.cross_attention.project_memory(memory) for layer in self.decoder_layers]

    def decode(
        self, target_in: Tensor, memory_kv: list[tuple[Tensor, Tensor]], memory_mask: Tensor,
        caches: list[dict[str, Tensor]] | None = None, offset: int = 0,
    ) -> Tensor:
        """Decoder logits [batch, tgt_len, vocab]. With caches, decodes incrementally."""
        return self.decode_with_states(target_in, memory_kv, memory_mask, caches, offset)[0]

    def decode_with_states(
        self, target_in: Tensor, memory_kv: list[tuple[Tensor, Tensor]], memory_mask: Tensor,
        caches: list[dict[str, Tensor]] | None = None, offset: int = 0,
        state: str | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Decoder logits and, with `state` (one of DECODER_STATES), that decoder state
        [batch, tgt_len, d_model] at every position: the kNN-MT datastore's keys."""
        if state is not None and state not in DECODER_STATES:
            raise ValueError(f"unknown decoder state {state!r} (known: "
                             f"{', '.join(DECODER_STATES)})")
        captured: list[Tensor] = []
        hook = None
        if state == "last_ffn_input":  # the normalised input of the last layer's fc1
            hook = self.decoder_layers[-1].ffn.norm.register_forward_hook(
                lambda _module, _inputs, output: captured.append(output))
        try:
            x = self.embed(target_in, offset)
            for index, layer in enumerate(self.decoder_layers):
                x = layer(x, memory_kv[index], memory_mask,
                          cache=caches[index] if caches is not None else None)
        finally:
            if hook is not None:
                hook.remove()
        features = self.decoder_norm(x)
        if state == "final":
            captured.append(features)
        return F.linear(features, self.embedding.weight), (captured[0] if captured else None)

    def forward(self, source: Tensor, target_in: Tensor,
                passes: int | None = None) -> Tensor | list[tuple[Tensor, Tensor]]:
        """Teacher-forced logits on `target_in`. With `passes = N`: N (decoder input, logits)
        pairs, pass 1 on `target_in` and pass n on [BOS, argmax of pass n−1 without its last
        position] (all positions at once, not autoregressive), one encoder output shared by
        every pass so that each pass's gradient reaches the encoder. One call, so that DDP
        sees one forward pass per step."""
        memory, mask = self.encode(source)
        memory_kv = self.memory_kv(memory)
        if passes is None:
            return self.decode(target_in, memory_kv, mask)
        if passes < 1:
            raise ValueError(f"passes must be at least 1, got {passes}")
        outputs = [(target_in, self.decode(target_in, memory_kv, mask))]
        for _ in range(passes - 1):
            predicted = outputs[-1][1].detach().argmax(dim=-1)
            decoder_in = torch.cat([target_in[:, :1], predicted[:, :-1]], dim=1)
            outputs.append((decoder_in, self.decode(decoder_in, memory_kv, mask)))
        return outputs


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
