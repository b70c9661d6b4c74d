"""Per-step diagnostics of monocular training that tell a learning run from a diverging one.

``diag/translation`` (the pose network's mean translation magnitude) and ``diag/warp_wins`` (the share of
pixels at scale 0 where a warped source beats the unwarped ones; one half is chance), logged with the losses
whether or not the loss itself compares with the unwarped frames. Pure functions of a step, so that the
recipe grid (tools/recipe_grid.py) reads them back from TensorBoard and a test checks them against
hand-computed values. docs/own_data.md ("Codecs, repeated frames and seeds") shows what they tell."""

from __future__ import annotations

import torch

import layers

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


def warp_wins_share(inputs: dict, outputs: dict, scale: int = 0) -> float | None:
    """Share of pixels where the best warped source frame matches the target better than every unwarped
    one: auto-masking's verdict, measured also when the loss averages or leaves the comparison out
    (None when the step warped nothing)."""
    target = inputs.get(("color", 0, 0))
    sources = [
        key[1]
        for key in outputs
        if isinstance(key, tuple) and len(key) == 3 and key[0] == "color" and key[2] == scale
    ]
    if target is None or not sources:
        return None
    with torch.no_grad():
        target = target.float()
        warped = [layers.reprojection_error(outputs[("color", f, scale)].float(), target) for f in sources]
        identity = [layers.reprojection_error(inputs[("color", f, 0)].float(), target) for f in sources]
        best_warped = torch.cat(warped, 1).min(1)[0]
        best_identity = torch.cat(identity, 1).min(1)[0]
    return float((best_warped < best_identity).float().mean())


def step_scalars(inputs: dict, outputs: dict) -> dict[str, float]:
    """The diagnostics that a step allows, by TensorBoard tag."""
    values = {
        TRANSLATION_TAG: translation_magnitude(outputs),
        WARP_WINS_TAG: warp_wins_share(inputs, outputs),
    }
    return {tag: value for tag, value in values.items() if value is not None}
