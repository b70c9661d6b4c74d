"""Per-step diagnostics of monocular training that tell a learning run from a diverging one.

``diag/translation`` (the pose network's mean translation magnitude) and ``diag/warp_wins`` (the share of
pixels at scale 0 where a warped source beats the unwarped ones; one half is chance), logged with the losses.
Pure functions of a step's outputs, so that the recipe grid (tools/recipe_grid.py) reads them back from
TensorBoard and a test checks them against hand-computed values. docs/own_data.md ("Codecs, repeated
frames and seeds") shows what they tell."""

from __future__ import annotations

import torch

TRANSLATION_TAG = "diag/translation"
WARP_WINS_TAG = "diag/warp_wins"


def translation_magnitude(outputs: dict) -> float | None:
    """Mean Euclidean norm of the pose network's translations ``("translation", f)`` over batch and frames
    (None when the step predicted no pose)."""
    norms = [
        value.detach()[:, 0].reshape(value.shape[0], -1, 3).norm(dim=-1).mean()
        for key, value in outputs.items()
        if isinstance(key, tuple) and len(key) == 2 and key[0] == "translation"
    ]
    return float(torch.stack(norms).mean()) if norms else None


def warp_wins_share(outputs: dict, scale: int = 0) -> float | None:
    """Share of pixels whose auto-mask says a warped frame beat the unwarped ones (None without
    auto-masking)."""
    mask = outputs.get(("automask", scale))
    return None if mask is None else float(mask.float().mean())


def step_scalars(outputs: dict) -> dict[str, float]:
    """The diagnostics that a step's outputs allow, by TensorBoard tag."""
    values = {TRANSLATION_TAG: translation_magnitude(outputs), WARP_WINS_TAG: warp_wins_share(outputs)}
    return {tag: value for tag, value in values.items() if value is not None}
