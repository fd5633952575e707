"""Export a torch checkpoint to a self-contained CTranslate2 model directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import ctranslate2
import numpy as np
import torch
from ctranslate2.specs import TransformerSpec, common_spec

from nmtkd.checkpoint import load_model
from nmtkd.errors import NmtkdError
from nmtkd.model import LAYER_NORM_EPS, MultiHeadAttention, Transformer
from nmtkd.pathargs import legacy_export
from nmtkd.safepaths import atomic_path
from nmtkd.spm import BOS, EOS, UNK, Tokenizer

QUANTIZATIONS = ("float32", "int8", "int8_float32", "int16", "float16", "bfloat16")


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().float().numpy()


def _linear(spec, layer: torch.nn.Linear) -> None:
    spec.weight = _array(layer.weight)
    spec.bias = _array(layer.bias)


def _norm(spec, norm: torch.nn.LayerNorm) -> None:
    spec.gamma = _array(norm.weight)
    spec.beta = _array(norm.bias)


def _self_attention(spec, norm: torch.nn.LayerNorm, attention: MultiHeadAttention) -> None:
    _norm(spec.layer_norm, norm)
    _linear(spec.linear[0], attention.qkv)
    _linear(spec.linear[1], attention.out)


def _ffn(spec, ffn) -> None:
    _norm(spec.layer_norm, ffn.norm)
    _linear(spec.linear_0, ffn.inner)
    _linear(spec.linear_1, ffn.outer)


def build_spec(model: Transformer) -> TransformerSpec:
    cfg = model.cfg
    spec = TransformerSpec.from_config(
        (cfg.encoder_layers, cfg.decoder_layers), cfg.heads, pre_norm=True,
        activation=common_spec.Activation.RELU,
    )
    positions = _array(model.positions)
    embedding = _array(model.embedding.weight)
    spec.encoder.embeddings[0].weight = embedding
    spec.decoder.embeddings.weight = embedding
    for side in (spec.encoder, spec.decoder):
        side.scale_embeddings = True  # CTranslate2 multiplies by sqrt(d_model) itself
        side.position_encodings.encodings = positions  # our own table: layouts differ
    for layer_spec, layer in zip(spec.encoder.layer, model.encoder_layers, strict=True):
        _self_attention(layer_spec.self_attention, layer.norm, layer.attention)
        _ffn(layer_spec.ffn, layer.ffn)
    _norm(spec.encoder.layer_norm, model.encoder_norm)
    for layer_spec, layer in zip(spec.decoder.layer, model.decoder_layers, strict=True):
        _self_attention(layer_spec.self_attention, layer.self_norm, layer.self_attention)
        cross = layer_spec.attention
        _norm(cross.layer_norm, layer.cross_norm)
        _linear(cross.linear[0], layer.cross_attention.query)
        _linear(cross.linear[1], layer.cross_attention.key_value)
        _linear(cross.linear[2], layer.cross_attention.out)
        _ffn(layer_spec.ffn, layer.ffn)
    _norm(spec.decoder.layer_norm, model.decoder_norm)
    spec.decoder.projection.weight = embedding
    spec.decoder.projection.bias = np.zeros(embedding.shape[0], dtype=np.float32)
    spec.config.add_source_eos = True
    spec.config.layer_norm_epsilon = LAYER_NORM_EPS
    spec.config.unk_token, spec.config.bos_token, spec.config.eos_token = UNK, BOS, EOS
    spec.config.decoder_start_token = BOS
    return spec


def record_max_positions(model_dir: Path, max_positions: int) -> None:
    """Add the model's positions to CTranslate2's config.json (which ignores unknown keys), so
    that `nmtkd translate` cuts longer inputs instead of failing in the middle of a file."""
    config_file = model_dir / "config.json"
    config = json.loads(config_file.read_text())
    config["max_positions"] = max_positions
    config_file.write_text(json.dumps(config, indent=2) + "\n")


def export_model(checkpoint_path: Path, spm_model: Path, output_dir: Path,
                 quantization: str = "float32") -> None:
    """Write a CT2 model directory with `spm.model` beside it (self-contained)."""
    if quantization not in QUANTIZATIONS:
        raise NmtkdError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, "
                         f"got {quantization!r}")
    model, _ = load_model(checkpoint_path)
    tokenizer = Tokenizer(spm_model)
    if len(tokenizer) != model.cfg.vocab_size:
        raise NmtkdError(f"{spm_model}: vocabulary of {len(tokenizer)} pieces, but "
                         f"{checkpoint_path} was trained with {model.cfg.vocab_size}")
    spec = build_spec(model)
    vocabulary = tokenizer.vocabulary()
    spec.register_source_vocabulary(vocabulary)
    spec.register_target_vocabulary(vocabulary)
    spec.validate()
    spec.optimize(quantization=None if quantization == "float32" else quantization)
    with atomic_path(output_dir, directory=True, owner="export", legacy=legacy_export) as tmp:
        tmp.mkdir()
        spec.save(str(tmp))
        record_max_positions(tmp, model.cfg.max_positions)
        shutil.copyfile(spm_model, tmp / "spm.model")
        # fail now, before the directory is in place, rather than at decoding time
        try:
            ctranslate2.Translator(str(tmp), device="cpu", compute_type="auto")
        except (RuntimeError, ValueError) as error:
            raise NmtkdError(f"{output_dir}: CTranslate2 cannot load the export "
                             f"({error})") from None
