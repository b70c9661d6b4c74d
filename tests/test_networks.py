"""Networks: sizes, checkpoint layouts, CMA's formula, decoder wiring, every Table 2 configuration."""

import math
import os
import urllib.error

import pytest
import torch
import torch.nn.functional as F

import options
from conftest import random_batch, read_checkpoint_keys
from model import FSREModel
from networks import CMA, JointDecoder, PoseDecoder, PretrainedWeightsUnavailable, ResnetEncoder
from networks.resnet_encoder import RESNETS

CONFIGS = ["baseline", "semantics", "cma", "sgt", "full"]


def count(module):
    return sum(p.numel() for p in module.parameters())


def small_opts(*args):
    return options.parse_args(["--weights_init", "scratch", "--height", "96", "--width", "320", *args])


def test_parameter_counts_equal_the_authors_full_resnet18_model():
    model = FSREModel(small_opts("--config", "full"))
    assert count(model.encoder) == 11_176_512
    assert count(model.pose_encoder) == 11_185_920
    assert count(model.pose) == 1_313_030
    assert count(model.decoder) == 14_072_567


def assert_layout(state_dict, reference, ignore_prefix=None):
    expected = {k: v for k, v in reference.items() if not (ignore_prefix and k.startswith(ignore_prefix))}
    assert set(state_dict) == set(expected)
    for key, (shape, dtype) in expected.items():
        assert tuple(state_dict[key].shape) == shape, key
        assert str(state_dict[key].dtype).replace("torch.", "") == dtype, key


def test_state_dicts_have_the_authors_and_monodepth2_layouts():
    model = FSREModel(small_opts("--config", "full"))
    # the classifier (encoder.fc.*) is in their files but unused: we do not build it
    assert_layout(model.encoder.state_dict(), read_checkpoint_keys("fsre_encoder.txt"), "encoder.fc.")
    assert_layout(
        model.pose_encoder.state_dict(), read_checkpoint_keys("fsre_pose_encoder.txt"), "encoder.fc."
    )
    assert_layout(model.pose.state_dict(), read_checkpoint_keys("fsre_pose.txt"))
    assert_layout(model.decoder.state_dict(), read_checkpoint_keys("fsre_decoder.txt"))
    baseline = FSREModel(small_opts("--config", "baseline"))
    assert_layout(baseline.decoder.depth_decoder.state_dict(), read_checkpoint_keys("monodepth2_depth.txt"))
    assert_layout(
        PoseDecoder((64, 64, 128, 256, 512), 2).state_dict(), read_checkpoint_keys("monodepth2_pose.txt")
    )


@pytest.mark.parametrize(
    "num_layers,channels", [(18, (64, 64, 128, 256, 512)), (50, (64, 256, 512, 1024, 2048))]
)
def test_encoder_features(num_layers, channels):
    encoder = ResnetEncoder(num_layers).eval()
    assert encoder.num_ch_enc == channels
    images = torch.rand(1, 3, 64, 96)
    features = encoder(images)
    assert [f.shape[1] for f in features] == list(channels)
    assert [tuple(f.shape[-2:]) for f in features] == [(64 // 2**i, 96 // 2**i) for i in range(1, 6)]
    e = encoder.encoder
    first = e.relu(e.bn1(e.conv1((images - 0.45) / 0.225)))  # Monodepth2's normalisation
    assert torch.allclose(features[0], first)


def fake_imagenet_file(tmp_path, monkeypatch, num_layers=18):
    """Put a random ResNet state dict where torchvision's weights API looks for the download."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = RESNETS[num_layers][1]
    state = RESNETS[num_layers][0](weights=None).state_dict()
    os.makedirs(tmp_path / "hub" / "checkpoints")
    torch.save(state, tmp_path / "hub" / "checkpoints" / os.path.basename(weights.url))
    return state


def test_pretrained_weights_load_and_pose_encoder_averages_the_first_conv(tmp_path, monkeypatch):
    state = fake_imagenet_file(tmp_path, monkeypatch)
    encoder = ResnetEncoder(18, pretrained=True)
    assert torch.equal(encoder.encoder.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])
    pose_encoder = ResnetEncoder(18, pretrained=True, num_input_images=2)
    expected = torch.cat([state["conv1.weight"]] * 2, 1) / 2
    assert torch.equal(pose_encoder.encoder.conv1.weight, expected)


def test_missing_imagenet_weights_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)  # what the weights API calls to fetch
    with pytest.raises(PretrainedWeightsUnavailable) as err:
        ResnetEncoder(18, pretrained=True)
    message = str(err.value)
    assert (
        "resnet18-f37072fd.pth" in message
        and str(tmp_path) in message
        and "--weights_init scratch" in message
    )


def cma_by_formula(cma, key, query, heads):
    """CMA written out: per-head dot products over each head's channel block, softmax over heads."""
    b, c, h, w = key.shape
    q = F.conv2d(query, cma.query_conv.weight, cma.query_conv.bias)
    k = F.conv2d(key, cma.key_conv.weight, cma.key_conv.bias)
    v = F.conv2d(key, cma.value_conv.weight, cma.value_conv.bias)
    e = q.shape[1]
    block = e // heads
    scores = [
        (q[:, i * block : (i + 1) * block] * k[:, i * block : (i + 1) * block]).sum(1) / math.sqrt(e)
        for i in range(heads)
    ]
    if heads > 1:
        exp = [torch.exp(s) for s in scores]
        scores = [x / sum(exp) for x in exp]
    out = sum(v[:, i * block : (i + 1) * block] * scores[i].unsqueeze(1) for i in range(heads))
    projected = cma.W(out)
    return cma.fuse(torch.cat([key, projected], 1))


@pytest.mark.parametrize("heads", [1, 4])
def test_cma_equals_its_formula(heads):
    torch.manual_seed(heads)
    cma = CMA(8, num_heads=heads, ratio=2).eval()
    key, query = torch.randn(2, 8, 5, 7), torch.randn(2, 8, 5, 7)
    assert cma.query_conv.out_channels == heads * 8 * 2
    assert torch.allclose(cma(key, query), cma_by_formula(cma, key, query, heads), atol=1e-5)


def test_joint_decoder_applies_cma_to_pre_update_features_and_heads_read_the_result():
    torch.manual_seed(0)
    channels = (64, 64, 128, 256, 512)
    decoder = JointDecoder(channels, cma_layers=(0, 1, 2)).eval()
    assert sorted(decoder.att_d_to_s.keys()) == ["1", "2", "3"]  # the authors' --cma_layers 3 2 1
    features = [torch.randn(1, c, 32 // 2**i, 64 // 2**i) for i, c in enumerate(channels)]
    outputs = decoder(features)
    x_d = x_s = features[-1]
    for level in range(4, -1, -1):
        x_d = decoder.depth_decoder.level(level, x_d, features)
        x_s = decoder.seg_decoder.level(level, x_s, features)
        if level >= 2:  # the paper's l = 0, 1, 2
            new_d = decoder.att_d_to_s[str(level - 1)](x_d, x_s)
            new_s = decoder.att_s_to_d[str(level - 1)](x_s, x_d)
            x_d, x_s = new_d, new_s
        assert torch.equal(outputs[("depth_feature", level)], x_d)
        if level <= 3:
            assert torch.equal(
                outputs[("disp", level)], torch.sigmoid(decoder.depth_decoder.head(level)(x_d))
            )
    assert torch.equal(outputs[("seg_logits", 0)], decoder.seg_decoder.head(0)(x_s))


def test_pose_decoder_outputs_and_monodepth2_variant():
    features = [torch.randn(2, 512, 3, 10)]
    for frames in (1, 2):
        decoder = PoseDecoder((64, 64, 128, 256, 512), frames)
        axisangle, translation = decoder(features)
        assert axisangle.shape == translation.shape == (2, frames, 1, 3)
        raw = decoder.net[3](
            F.relu(decoder.net[2](F.relu(decoder.net[1](F.relu(decoder.net[0](features[0]))))))
        )
        assert torch.allclose(translation[:, 0, 0], 0.01 * raw.mean((2, 3))[:, 3:6], atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
def test_every_table2_configuration_forward_shapes_and_ranges(config):
    torch.manual_seed(0)
    opts = small_opts("--config", config)
    model = FSREModel(opts)
    outputs, losses = model(random_batch())
    for s in range(4):
        disp = outputs[("disp", s)]
        assert disp.shape == (2, 1, 96 // 2**s, 320 // 2**s)
        assert (disp > 0).all() and (disp < 1).all()
        depth = outputs[("depth", 0, s)]
        assert depth.shape == (2, 1, 96, 320) and depth.min() >= 0.1 - 1e-6 and depth.max() <= 100 + 1e-3
        for f in (-1, 1):
            assert outputs[("color", f, s)].shape == (2, 3, 96, 320)
    for f in (-1, 1):
        assert outputs[("cam_T_cam", 0, f)].shape == (2, 4, 4)
    has_semantics = config != "baseline"
    assert (("seg_logits", 0) in outputs) == has_semantics
    if has_semantics:
        assert outputs[("seg_logits", 0)].shape == (2, 19, 96, 320)
    assert bool(model.decoder.att_d_to_s) == (config in ("cma", "full"))
    assert ("sgt/1" in losses) == (config in ("sgt", "full"))
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
def test_gradients_reach_every_parameter(config):
    torch.manual_seed(0)
    model = FSREModel(small_opts("--config", config))
    _, losses = model(random_batch())
    losses["loss"].backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_cma_without_semantics_is_rejected():
    with pytest.raises(SystemExit):
        small_opts("--config", "full", "--semantic_weight", "0")
    with pytest.raises(ValueError, match="segmentation decoder"):
        JointDecoder((64, 64, 128, 256, 512), semantics=False, cma_layers=(0,))
