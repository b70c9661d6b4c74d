"""FSRE-Depth as one module: the networks, view synthesis and the losses of a training step.

``FSREModel.forward(inputs)`` returns ``(outputs, losses)``, so that DataParallel and DDP split the loss
work along with the networks; the batch, output and loss keys (Monodepth2's) are in docs/training.md.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import layers
from datasets.cityscapes import IGNORE_ID
from networks import JointDecoder, PoseDecoder, build_encoder
from options import source_frame_ids, uses_semantics

# The pose network was trained at this size; wider inputs are resized to it for pose only.
POSE_HEIGHT, POSE_WIDTH = 192, 640


def image_keys(opts: argparse.Namespace) -> frozenset[tuple]:
    """The image keys a training step reads, so that the loader can skip the others.

    ``("color", f, 0)`` of every frame (warping and the photometric loss work at full size),
    ``("color", 0, s)`` of the target at every scale (smoothness), and ``("color_aug", f, 0)`` of
    the target (depth) and of the temporal neighbours (pose). Monodepth2's loader (``--input_images
    all``) makes every frame at every scale, plain and jittered: 24 images per item of which these 9
    are read.
    """
    frames = [0] + source_frame_ids(opts)
    keys = {("color", f, 0) for f in frames} | {("color", 0, s) for s in opts.scales}
    keys |= {("color_aug", f, 0) for f in frames if f != "s"}
    return frozenset(keys)


class FSREModel(nn.Module):
    """Depth encoder (``--encoder``), joint decoder, pose encoder (``--pose_encoder``) and pose decoder, wired
    with their losses."""

    def __init__(self, opts: argparse.Namespace) -> None:
        super().__init__()
        self.opts = opts
        pretrained = opts.weights_init == "pretrained"
        self.semantics = uses_semantics(opts)
        self.source_ids = source_frame_ids(opts)
        self.pose_ids = [f for f in self.source_ids if f != "s"]
        self.encoder = build_encoder(opts.encoder, pretrained)
        self.decoder = JointDecoder(
            self.encoder.num_ch_enc,
            opts.scales,
            self.semantics,
            opts.num_classes,
            opts.cma_layers,
            opts.num_heads,
            opts.cma_ratio,
            feature_strides=self.encoder.feature_strides,
        )
        if self.pose_ids:
            self.pose_encoder = build_encoder(
                opts.pose_encoder, pretrained, num_input_images=2, all_levels=False
            )
            self.pose = PoseDecoder(self.pose_encoder.num_ch_enc)
        else:
            self.pose_encoder = self.pose = None

    def networks(self) -> dict[str, nn.Module]:
        """The networks by role, named as their checkpoint files."""
        nets = {
            "encoder": self.encoder,
            "decoder": self.decoder,
            "pose_encoder": self.pose_encoder,
            "pose": self.pose,
        }
        return {name: net for name, net in nets.items() if net is not None}

    # ----------------------------------------------------------------------------------------
    def forward(
        self, inputs: dict, with_outputs: bool = True, plain_photometric: bool = False
    ) -> tuple[dict, dict]:
        """A training step's (outputs, losses); ``with_outputs=False`` returns no outputs, which
        spares DataParallel from gathering them on steps that do not log images."""
        outputs = self.decoder(self.encoder(inputs[("color_aug", 0, 0)]))
        if self.pose_ids:
            outputs.update(self.predict_poses(inputs))
        self.synthesize_views(inputs, outputs)
        losses = self.compute_losses(inputs, outputs, plain_photometric)
        return (outputs if with_outputs else {}), losses

    def predict_poses(self, inputs: dict) -> dict:
        """Relative pose target -> each temporal neighbour, from frame pairs in time order."""
        outputs = {}
        for f in self.pose_ids:
            pair = [inputs[("color_aug", f, 0)], inputs[("color_aug", 0, 0)]]
            if f > 0:
                pair.reverse()
            pair = torch.cat(pair, 1)
            if pair.shape[-1] > POSE_WIDTH:
                pair = F.interpolate(
                    pair, size=(POSE_HEIGHT, POSE_WIDTH), mode="bilinear", align_corners=False
                )
            axisangle, translation = self.pose(self.pose_encoder(pair))
            outputs[("axisangle", f)] = axisangle
            outputs[("translation", f)] = translation
            outputs[("cam_T_cam", 0, f)] = layers.transformation_from_parameters(
                axisangle[:, 0], translation[:, 0], invert=f < 0
            )
        return outputs

    def synthesize_views(self, inputs: dict, outputs: dict) -> None:
        """Warp every source frame into the target with each scale's depth (upsampled first)."""
        opts = self.opts
        target = inputs[("color", 0, 0)]
        height, width = target.shape[-2:]
        for scale in opts.scales:
            disp = F.interpolate(
                outputs[("disp", scale)], size=(height, width), mode="bilinear", align_corners=False
            )
            _, depth = layers.disp_to_depth(disp, opts.min_depth, opts.max_depth)
            outputs[("depth", 0, scale)] = depth
            points = layers.backproject_depth(depth, inputs[("inv_K", 0)])
            for f in self.source_ids:
                T = inputs["stereo_T"] if f == "s" else outputs[("cam_T_cam", 0, f)]
                grid = layers.project_3d(points, inputs[("K", 0)], T, height, width)
                outputs[("sample", f, scale)] = grid
                outputs[("color", f, scale)] = layers.warp(inputs[("color", f, 0)], grid)

    def compute_losses(self, inputs: dict, outputs: dict, plain_photometric: bool = False) -> dict:
        """All loss terms of a batch and their weighted total ``losses["loss"]``; ``plain_photometric``
        averages the warped frames' errors without the unwarped ones (``--photometric_warmup``)."""
        opts = self.opts
        losses: dict = {}
        target = inputs[("color", 0, 0)]
        average = opts.avg_reprojection or plain_photometric
        identity = None
        if not (opts.disable_automasking or plain_photometric):
            identity = torch.cat(
                [layers.reprojection_error(inputs[("color", f, 0)], target) for f in self.source_ids], 1
            )
            if average:
                identity = identity.mean(1, keepdim=True)
        total = target.new_zeros(())
        for scale in opts.scales:
            warped = torch.cat(
                [layers.reprojection_error(outputs[("color", f, scale)], target) for f in self.source_ids], 1
            )
            if average:
                warped = warped.mean(1, keepdim=True)
            best, automask = layers.min_reprojection(warped, identity)
            outputs[("automask", scale)] = automask
            photometric = best.mean()
            disp = outputs[("disp", scale)]
            smoothness = layers.smoothness_loss(disp, inputs[("color", 0, scale)])
            losses[f"photometric/{scale}"] = photometric
            losses[f"smoothness/{scale}"] = smoothness
            if opts.scale_weighting == "fsre":
                total = total + (photometric + opts.disparity_smoothness * smoothness) / 2**scale
            else:
                total = total + (photometric + opts.disparity_smoothness * smoothness / 2**scale) / len(
                    opts.scales
                )

        labels = inputs.get(("seg", 0, 0))
        if opts.semantic_weight > 0:
            losses["semantic"] = layers.semantic_loss(outputs[("seg_logits", 0)], labels, IGNORE_ID)
            total = total + opts.semantic_weight * losses["semantic"]
        if opts.sgt_weight > 0:
            sgt_total = target.new_zeros(())
            for level in opts.sgt_levels:
                feature = outputs[("depth_feature", level)]
                level_labels = layers.downsample_labels(labels, tuple(feature.shape[-2:]))
                sgt, boundary = layers.semantic_triplet_loss(
                    feature, level_labels, opts.sgt_kernel_size, opts.sgt_margin
                )
                outputs[("sgt_boundary", level)] = boundary
                losses[f"sgt/{level}"] = sgt
                sgt_total = sgt_total + sgt / 2**level
            total = total + opts.sgt_weight * sgt_total
        losses["loss"] = total
        return losses
