"""FlashPortrait's Normalized Facial Expression Block combination, shared by the reference DiT and the full-scale Wan processor."""

from __future__ import annotations

from torch import Tensor

NFEB_VARIANTS: tuple[str, ...] = ("paper", "code", "add", "pure_norm", "center")


def nfeb_combine(
    z_img: Tensor, z_p: Tensor, variant: str, scale: float = 1.0, eps: float = 1e-5
) -> Tensor:
    """z_img + scale * z_p_bar: the portrait branch ``z_p`` normalised to ``z_img``'s statistics (NFEB, Sec. 3.2).

    Shapes ``[B, ..., D]``. ``paper``: per token over channels, z_p_bar = (z_p - mu_p) /
    sigma_p * sigma_img + mu_img; ``code``: the public code's one scalar mean and std per sample
    over all tokens and channels; ``add``, ``pure_norm`` (no re-scale) and ``center`` (mean
    removed only) are the paper's ablations. ``scale`` is the public code's ``ip_scale``.
    """
    if variant == "add":
        z_p_bar = z_p
    elif variant == "code":
        dims = tuple(range(1, z_p.ndim))
        mean_p, std_p = z_p.mean(dim=dims, keepdim=True), z_p.std(dim=dims, keepdim=True)
        mean_i, std_i = z_img.mean(dim=dims, keepdim=True), z_img.std(dim=dims, keepdim=True)
        z_p_bar = (z_p - mean_p) * std_i / (std_p + eps) + mean_i
    elif variant in ("paper", "pure_norm", "center"):
        z_p_bar = z_p - z_p.mean(dim=-1, keepdim=True)
        if variant != "center":
            z_p_bar = z_p_bar / (z_p.std(dim=-1, keepdim=True) + eps)
        if variant == "paper":
            z_p_bar = z_p_bar * z_img.std(dim=-1, keepdim=True) + z_img.mean(dim=-1, keepdim=True)
    else:
        raise ValueError(f"variant={variant!r} is not an NFEB variant; use one of {NFEB_VARIANTS}")
    return z_img + scale * z_p_bar
