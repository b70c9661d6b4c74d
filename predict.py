"""Predict depth for images: ``python predict.py --load_weights_folder W|--onnx FILE --image_path IMG_OR_FOLDER``.

For every image it writes ``<name>_disp.npy`` (the scaled disparity at the model's input size),
``<name>_depth.npy`` (``--depth_scale`` / disparity: relative depth for monocular models, metric
for stereo-trained ones with 5.4), ``<name>_disp.png`` (the disparity at the image's size in the
magma colour map) and, for models with a segmentation head, ``<name>_seg.png`` (the prediction in
the Cityscapes palette blended over the image). A folder is read in sorted order, so a folder of
frames is a sequence. ``--onnx`` runs a file written by export_model.py through onnxruntime (CPU)
instead of a model folder, with the same outputs.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from tqdm import tqdm

import utils
from datasets.cityscapes import segmentation_overlay
from datasets.mono_dataset import RESIZE_FILTER
from deploy import depth_graph

logger = logging.getLogger(__name__)


def find_images(paths: Sequence[str]) -> list[str]:
    """Image files named or found (sorted) in the named folders."""
    images = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(path, f) for f in os.listdir(path)
                           if f.lower().endswith(utils.IMAGE_EXTENSIONS) and not f.endswith(("_disp.png", "_seg.png")))
            images += found
        elif os.path.isfile(path):
            images.append(path)
        else:
            raise utils.MissingFileError(f"{path}: no such image or folder")
    if not images:
        raise utils.MissingFileError(f"no images ({', '.join(utils.IMAGE_EXTENSIONS)}) in {', '.join(paths)}")
    return images


def output_stem(image_path: str, output_dir: str | None) -> str:
    """Path prefix of an image's outputs: beside it (Monodepth2's habit) or in ``output_dir``."""
    name = os.path.splitext(os.path.basename(image_path))[0]
    return os.path.join(output_dir or os.path.dirname(os.path.abspath(image_path)), name)


class TorchPredictor:
    """A model folder's networks: images (B, 3, H, W) in [0, 1] -> scaled disparity and segmentation logits."""

    def __init__(self, folder: str, device: torch.device) -> None:
        # The graph export_model.py exports: the PyTorch and exported paths share one definition.
        self.graph, self.spec = depth_graph.load_graph(folder, device, segmentation=None)
        self.device = device
        self.height, self.width = self.spec.height, self.spec.width
        self.has_segmentation = self.spec.semantics

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        outputs = self.graph(images.to(self.device))
        seg = outputs[1] if self.has_segmentation else None
        return outputs[0][:, 0].cpu().numpy(), None if seg is None else seg.cpu().numpy()


class OnnxPredictor:
    """An exported .onnx file run by onnxruntime, as a TorchPredictor (size and input type from its metadata)."""

    def __init__(self, path: str) -> None:
        self.graph = depth_graph.OnnxGraph(path)
        meta = self.graph.metadata
        self.height, self.width = int(meta["height"]), int(meta["width"])
        self.input_type = meta["input_type"]
        self.outputs = self.graph.output_names
        self.has_segmentation = depth_graph.OUTPUT_SEG in self.outputs

    def __call__(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        if self.input_type == "uint8":  # exact: the images came from 8-bit pictures
            images = (images * utils.UINT8_MAX).round().to(torch.uint8)
        outputs = dict(zip(self.outputs, self.graph(images)))
        return outputs[depth_graph.OUTPUT_DISP][:, 0], outputs.get(depth_graph.OUTPUT_SEG)


def predict(predictor, image_paths: Sequence[str], output_dir: str | None, depth_scale: float = 1.0,
            batch_size: int = 8) -> list[str]:
    """Write every image's outputs; return the path prefixes written."""
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
    stems = []
    for start in tqdm(range(0, len(image_paths), batch_size), desc="predicting", unit="batch"):
        batch_paths = image_paths[start:start + batch_size]
        originals = []
        for path in batch_paths:
            with Image.open(path) as img:
                originals.append(img.convert("RGB"))
        inputs = torch.stack([TF.to_tensor(img.resize((predictor.width, predictor.height), RESIZE_FILTER))
                              for img in originals])
        disps, seg_logits = predictor(inputs)
        for i, (path, original) in enumerate(zip(batch_paths, originals)):
            stem = output_stem(path, output_dir)
            utils.save_array(disps[i], stem + "_disp.npy")
            utils.save_array(depth_scale / disps[i], stem + "_depth.npy")
            size = (original.height, original.width)
            disp = F.interpolate(torch.from_numpy(disps[i])[None, None], size=size, mode="bilinear",
                                 align_corners=False)[0, 0].numpy()
            utils.save_png(utils.colormap(disp), stem + "_disp.png")
            if seg_logits is not None:
                logits = F.interpolate(torch.from_numpy(seg_logits[i])[None], size=size, mode="bilinear",
                                       align_corners=False)[0]
                overlay = segmentation_overlay(np.asarray(original), logits.argmax(0).numpy())
                utils.save_png(overlay, stem + "_seg.png")
            stems.append(stem)
    return stems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--load_weights_folder", help="model folder (any supported layout)")
    model.add_argument("--onnx", help="a .onnx file written by export_model.py, run by onnxruntime")
    parser.add_argument("--image_path", required=True, nargs="+", help="images and/or folders of images")
    parser.add_argument("--output_dir", default=None, help="where outputs go (default: beside each image)")
    parser.add_argument("--depth_scale", type=float, default=1.0,
                        help="depth = depth_scale / disparity (5.4 gives metres for stereo-trained models)")
    parser.add_argument("--batch_size", type=int, default=8, help="images per forward pass")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    opts = parser.parse_args(argv)
    utils.setup_logging()
    device = utils.pick_device(opts.device)
    predictor = OnnxPredictor(opts.onnx) if opts.onnx else TorchPredictor(opts.load_weights_folder, device)
    images = find_images(opts.image_path)
    stems = predict(predictor, images, opts.output_dir, opts.depth_scale, opts.batch_size)
    logger.info("wrote predictions for %d images (%s_disp.png ...)", len(stems), stems[0])
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
