"""torch.hub entry point: ``torch.hub.load(REPO, "fsre_depth", pretrained=NAME)`` (docs/released_models.md).

Returns the project's inference graph (deploy/depth_graph.DepthGraph, the one predict.py runs and
tools.export_model exports) in eval mode: RGB images (B, 3, H, W) in [0, 1], resized to the model's
input size (``model.height`` x ``model.width``), in; ``(disp, depth)`` out, with depth = 1 / disp as
predict.py's ``_depth.npy`` (and the segmentation logits with ``segmentation=True``). ``pretrained``
names a released model (``python predict.py --list_models``), fetched and cached as ``--model`` does;
``folder`` loads a model folder instead (any supported layout).
"""

from __future__ import annotations

dependencies = ["torch", "torchvision", "numpy", "PIL", "tqdm"]

DEFAULT_MODEL = "fsre_resnet18_192x640"  # the authors' released model


def fsre_depth(
    pretrained: str | bool = True,
    folder: str | None = None,
    device: str = "cpu",
    input_type: str = "float",
    segmentation: bool = False,
):
    """A ready depth model (DepthGraph: images in, disparity and depth out) of a released model or folder."""
    from checkpoints import model_card, released
    from deploy import depth_graph

    if folder is None:
        if pretrained is False:
            raise ValueError("fsre_depth needs weights: pretrained=NAME (a released model) or folder=PATH")
        folder = released.fetch_model(DEFAULT_MODEL if pretrained is True else str(pretrained))
    graph, spec = depth_graph.load_graph(folder, device, input_type, depth=True, segmentation=segmentation)
    graph.height, graph.width = spec.height, spec.width
    graph.card = model_card.describe(folder)
    return graph
