"""The released FlashPortrait files -> diffusers' Wan I2V with NFEB (``flashbench.models.flashportrait.transformer``).

``transformer.pt`` holds the whole DiT in the original Wan layout (``blocks.{i}.self_attn.q``,
``blocks.{i}.cross_attn.k_img``, ``img_emb.proj.0``, ...) plus the NFEB's
``blocks.{i}.cross_attn.emo_k_proj`` / ``emo_v_proj``, optionally under a ``"state_dict"`` entry;
``portrait_encoder.pt`` holds the encoder with our module's names (``proj_model.*``,
``mouth_proj_model.*``, ``emo_proj_model.*``). The mapping is a table of module renames; loading
is all or nothing: every released key must land on a model key and every model key be filled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor, nn

# Original Wan module path -> diffusers' WanTransformer3DModel module path.
TOP_LEVEL = {
    "patch_embedding": "patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "img_emb.proj.4": "condition_embedder.image_embedder.norm2",
    "head.head": "proj_out",
    "head.modulation": "scale_shift_table",
}
# Within ``blocks.{i}``. Wan calls the cross-attention norm ``norm3``; diffusers calls it ``norm2``.
PER_BLOCK = {
    "modulation": "scale_shift_table",
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "self_attn.norm_q": "attn1.norm_q",
    "self_attn.norm_k": "attn1.norm_k",
    "norm3": "norm2",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "cross_attn.norm_q": "attn2.norm_q",
    "cross_attn.norm_k": "attn2.norm_k",
    "cross_attn.k_img": "attn2.add_k_proj",
    "cross_attn.v_img": "attn2.add_v_proj",
    "cross_attn.norm_k_img": "attn2.norm_added_k",
    "cross_attn.emo_k_proj": "attn2.processor.emo_k_proj",
    "cross_attn.emo_v_proj": "attn2.processor.emo_v_proj",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")


def _rename(path: str, table: Mapping[str, str]) -> str | None:
    """``path`` with its module prefix renamed by ``table``; None when no entry covers it."""
    module = path.rpartition(".")[0]
    for candidate in (path, module):
        if candidate in table:
            return table[candidate] + path[len(candidate) :]
    return None


def diffusers_key(released: str) -> str | None:
    """The diffusers key of a released ``transformer.pt`` key, or None if it has none."""
    match = _BLOCK.fullmatch(released)
    if match:
        renamed = _rename(match[2], PER_BLOCK)
        return None if renamed is None else f"blocks.{match[1]}.{renamed}"
    return _rename(released, TOP_LEVEL)


def _summary(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_exact(model: nn.Module, state: Mapping[str, Tensor], name: str) -> None:
    """Load ``state`` (model key -> tensor) into ``model``, or a ValueError listing every missing, unexpected and mis-shaped key.

    Tensors are assigned, not copied, so a model built on the meta device takes them as they are.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{key} {tuple(state[key].shape)} != {tuple(expected[key].shape)}"
        for key in set(state) & set(expected)
        if state[key].shape != expected[key].shape
    )
    problems = [
        f"{label} ({len(keys)}): {_summary(keys)}"
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", misshaped),
        )
        if keys
    ]
    if problems:
        raise ValueError(
            f"{name} does not match the model: " + "; ".join(problems) + ". Check that the file is "
            "FlashPortrait's release for this configuration (Wan2.1-I2V-14B-720P) and not a "
            "partial or differently sized checkpoint"
        )
    model.load_state_dict(dict(state), strict=True, assign=True)


def load_transformer(transformer: nn.Module, released: Mapping[str, Tensor]) -> None:
    """Load a released ``transformer.pt`` state (Wan layout) into a diffusers Wan I2V with NFEB installed."""
    if "state_dict" in released:
        released = released["state_dict"]
    mapped: dict[str, Tensor] = {}
    unmapped = []
    for key, tensor in released.items():
        target = diffusers_key(key)
        if target is None:
            unmapped.append(key)
        else:
            mapped[target] = tensor
    if unmapped:
        raise ValueError(
            f"transformer.pt has {len(unmapped)} keys outside the Wan I2V + NFEB layout: "
            f"{_summary(sorted(unmapped))}; this loader reads FlashPortrait's release only"
        )
    load_exact(transformer, mapped, "transformer.pt")


def load_portrait_encoder(encoder: nn.Module, released: Mapping[str, Tensor]) -> None:
    """Load a released ``portrait_encoder.pt`` state (our names are the release's)."""
    load_exact(encoder, released, "portrait_encoder.pt")
