"""Deployment: ONNX (both exporters), torch.export and TorchScript exports of full and baseline models agree
with PyTorch (rtol 1e-4, atol 1e-5 in fp32) at batch sizes 1 and 3; metadata, input types, foreign folders,
one reader for every exported file, predict.py --onnx."""

import functools
import json
import os
import sys

import numpy as np
import pytest
import torch
from foreign_folders import write_authors_folder, write_monodepth2_folder

import layers
import options
import predict
import utils
from checkpoints import model_folder
from conftest import require
from datasets.synthetic.kitti_frames import DRIVE, make_tiny_kitti
from deploy import depth_graph
from deploy import export as deploy_export
from model import FSREModel
from tools import export_model

HEIGHT, WIDTH = 64, 192
RTOL, ATOL = 1e-4, 1e-5  # the tolerance export_model.py checks with, stated independently here
BATCH_SIZES = (1, 3)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Random-weight project folders of the full model (CMA + segmentation head) and the baseline."""
    root = tmp_path_factory.mktemp("export")
    result = {}
    for config in ("full", "baseline"):
        torch.manual_seed(1)
        opts = options.parse_args(
            [
                "--weights_init",
                "scratch",
                "--config",
                config,
                "--height",
                str(HEIGHT),
                "--width",
                str(WIDTH),
                "--min_depth",
                "0.5",
                "--max_depth",
                "50",
            ]
        )
        model = FSREModel(opts).eval()
        # non-trivial batch-norm statistics, so inference differs from training
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        result[config] = model_folder.save_model_folder(str(root / config), model.networks(), opts)
    return result


@functools.lru_cache(maxsize=None)
def pytorch_graph(folder, input_type, depth, segmentation):
    return depth_graph.load_graph(folder, input_type=input_type, depth=depth, segmentation=segmentation)[0]


def pytorch_outputs(folder, images, input_type="float", depth=True, segmentation=False):
    with torch.no_grad():
        return [t.numpy() for t in pytorch_graph(folder, input_type, depth, segmentation)(images)]


def module_outputs(module, images):
    """An exported module's outputs as numpy arrays."""
    with torch.no_grad():
        return [t.numpy() for t in module(images)]


def assert_outputs_close(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


def random_images(input_type, batch, height=HEIGHT, width=WIDTH, seed=0):
    g = torch.Generator().manual_seed(seed)
    if input_type == "uint8":
        return torch.randint(0, 256, (batch, 3, height, width), generator=g, dtype=torch.uint8)
    return torch.rand(batch, 3, height, width, generator=g)


@pytest.mark.slow
def test_depth_graph_is_the_networks_full_size_output(folders):
    encoder, decoder, spec = model_folder.load_depth_model(folders["full"])
    graph = depth_graph.DepthGraph(
        encoder, decoder, spec.min_depth, spec.max_depth, depth=True, segmentation=True
    )
    images = random_images("float", 2)
    with torch.no_grad():
        outputs = decoder(encoder(images))
        disp, depth, seg = graph(images)
    assert sorted(s for k, s in outputs if k == "disp") == [
        0,
        1,
        2,
        3,
    ]  # the networks it shares are unchanged
    expected_disp, expected_depth = layers.disp_to_depth(outputs[("disp", 0)], 0.5, 50.0)
    assert torch.equal(disp, expected_disp) and torch.equal(depth, expected_depth)
    assert torch.equal(seg, outputs[("seg_logits", 0)])


# (config, input type, with depth, with segmentation logits) of the exported files
EXPORTS = {"full": ("uint8", True, True), "baseline": ("float", True, False)}


def export(folder, fmt, path, input_type, depth, segmentation, *extra, check=False):
    flags = ["--depth"] * depth + ["--segmentation"] * segmentation + ["--no_check"] * (not check)
    assert (
        export_model.main(
            [
                "--load_weights_folder",
                folder,
                "--format",
                fmt,
                "--output",
                path,
                "--input_type",
                input_type,
                *flags,
                *extra,
            ]
        )
        == 0
    )
    return path


@pytest.fixture(scope="module")
def torchscript_files(folders, tmp_path_factory):
    root = tmp_path_factory.mktemp("ts")
    return {c: export(folders[c], "torchscript", str(root / f"{c}.pt"), *EXPORTS[c]) for c in EXPORTS}


@pytest.fixture(scope="module")
def program_files(folders, tmp_path_factory):
    """torch.export files: the full model at its size, the baseline with a dynamic size (and the built-in
    check)."""
    root = tmp_path_factory.mktemp("pt2")
    return {
        "full": export(folders["full"], "export", str(root / "full.pt2"), *EXPORTS["full"]),
        "baseline": export(
            folders["baseline"],
            "export",
            str(root / "baseline.pt2"),
            *EXPORTS["baseline"],
            "--dynamic_size",
            check=True,
        ),
    }


@pytest.fixture(scope="module")
def onnx_files(folders, tmp_path_factory):
    require("onnx", "onnxruntime")
    root = tmp_path_factory.mktemp("onnx")
    return {c: export(folders[c], "onnx", str(root / f"{c}.onnx"), *EXPORTS[c]) for c in EXPORTS}


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(EXPORTS))
def test_torchscript_matches_pytorch_at_two_batch_sizes(folders, torchscript_files, config):
    input_type, depth, segmentation = EXPORTS[config]
    module, meta = depth_graph.load_torchscript(torchscript_files[config])
    assert meta["outputs"] == ["disp", "depth"] + ["seg_logits"] * segmentation
    assert meta["options"] == json.load(open(os.path.join(folders[config], "opt.json")))
    for batch in BATCH_SIZES:
        images = random_images(input_type, batch, seed=batch)
        got = module_outputs(module, images)
        expected = pytorch_outputs(folders[config], images, input_type, depth, segmentation)
        assert_outputs_close(got, expected)
        assert got[0].shape == (batch, 1, HEIGHT, WIDTH)
        disp, depth_map = expected[:2]  # the training's depth range, not the sigmoid's
        assert disp.min() >= 1 / 50 and disp.max() <= 1 / 0.5 and np.allclose(depth_map, 1 / disp)
        if segmentation:
            assert got[2].shape == (batch, 19, HEIGHT, WIDTH)
    if input_type == "float":  # the traced graph is not tied to the traced size
        bigger = random_images(input_type, 2, 96, 320)
        got = module_outputs(module, bigger)
        assert_outputs_close(got, pytorch_outputs(folders[config], bigger, input_type, depth, segmentation))


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(EXPORTS))
def test_torch_export_program_matches_pytorch_at_two_batch_sizes(folders, program_files, config):
    input_type, depth, segmentation = EXPORTS[config]
    extra = {depth_graph.METADATA_FILE: ""}
    program = torch.export.load(program_files[config], extra_files=extra)  # a plain torch.export file
    meta = json.loads(extra[depth_graph.METADATA_FILE])
    assert json.loads(meta["outputs"]) == ["disp", "depth"] + ["seg_logits"] * segmentation
    assert json.loads(meta["options"]) == json.load(open(os.path.join(folders[config], "opt.json")))
    assert json.loads(meta["dynamic_size"]) == (config == "baseline")
    module = program.module()
    for batch in BATCH_SIZES:
        images = random_images(input_type, batch, seed=batch)
        got = module_outputs(module, images)
        assert_outputs_close(got, pytorch_outputs(folders[config], images, input_type, depth, segmentation))
        assert got[0].shape == (batch, 1, HEIGHT, WIDTH)
    other_size = random_images(input_type, 2, 96, 320)
    if config == "baseline":  # --dynamic_size: any multiple of 32
        got = module_outputs(module, other_size)
        assert_outputs_close(
            got, pytorch_outputs(folders[config], other_size, input_type, depth, segmentation)
        )
    else:  # the exported size only
        with pytest.raises(Exception, match="(?i)expected input.*shape|size|dim"):
            module(other_size)


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(EXPORTS))
@pytest.mark.needs("onnx", "onnxruntime")
def test_onnx_matches_pytorch_at_two_batch_sizes_with_metadata(folders, onnx_files, config):
    import onnx
    import onnxruntime as ort

    input_type, depth, segmentation = EXPORTS[config]
    path = onnx_files[config]
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert [op.version for op in model.opset_import if op.domain in ("", "ai.onnx")] == [17]
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (image,) = session.get_inputs()
    assert image.name == "image" and image.type == f"tensor({input_type})"
    assert image.shape[0] == "batch" and image.shape[1:] == [3, HEIGHT, WIDTH]
    meta = depth_graph.parse_metadata(session.get_modelmeta().custom_metadata_map, path)
    assert meta["options"] == json.load(open(os.path.join(folders[config], "opt.json")))
    assert (meta["min_depth"], meta["max_depth"], meta["height"], meta["width"]) == (0.5, 50.0, HEIGHT, WIDTH)
    assert meta["input_type"] == input_type and meta["source_layout"] == "fsre" and not meta["dynamic_size"]
    assert (
        meta["outputs"]
        == [o.name for o in session.get_outputs()]
        == ["disp", "depth"] + ["seg_logits"] * segmentation
    )
    for batch in BATCH_SIZES:
        images = random_images(input_type, batch, seed=batch)
        got = session.run(None, {"image": images.numpy()})
        assert_outputs_close(got, pytorch_outputs(folders[config], images, input_type, depth, segmentation))
        assert got[0].shape == (batch, 1, HEIGHT, WIDTH)
        if (
            input_type == "uint8" and batch == 1
        ):  # the same pictures as floats in [0, 1] give the same outputs
            assert_outputs_close(
                got, pytorch_outputs(folders[config], images.float() / 255, "float", depth, segmentation)
            )
    with pytest.raises(Exception, match="(?i)dimension|shape"):  # fixed image size: another size is refused
        session.run(None, {"image": random_images(input_type, 1, 96, 320).numpy()})


@pytest.mark.slow
@pytest.mark.needs("onnx", "onnxruntime")
def test_onnx_dynamic_size_and_monodepth2_folder(tmp_path):
    folder = str(tmp_path / "md2")
    write_monodepth2_folder(folder, height=HEIGHT, width=WIDTH)
    path = str(tmp_path / "md2.onnx")
    export(folder, "onnx", path, "float", True, False, "--dynamic_size")
    runner = depth_graph.OnnxGraph(path)
    assert runner.metadata["source_layout"] == "monodepth2" and runner.metadata["dynamic_size"]
    assert runner.metadata["options"]["min_depth"] == 0.1 and runner.metadata["options"]["max_depth"] == 100.0
    for shape in ((1, 3, HEIGHT, WIDTH), (3, 3, 96, 320)):
        images = torch.rand(shape, generator=torch.Generator().manual_seed(0))
        assert_outputs_close(runner(images), pytorch_outputs(folder, images))
    with pytest.raises(SystemExit):  # Monodepth2 has no segmentation head
        export_model.main(["--load_weights_folder", folder, "--segmentation", "--output", path])


@pytest.mark.slow
def test_authors_folder_exports_with_segmentation(tmp_path):
    folder = str(tmp_path / "authors")
    write_authors_folder(folder, height=HEIGHT, width=WIDTH, with_pose=False)
    path = export(folder, "torchscript", str(tmp_path / "authors.pt"), "float", False, True)
    module, meta = depth_graph.load_torchscript(path)
    assert (
        meta["source_layout"] == "fsre"
        and meta["outputs"] == ["disp", "seg_logits"]
        and meta["num_classes"] == 19
    )
    assert meta["options"]["cma_layers"] == [0, 1, 2]  # read from the decoder's keys
    images = random_images("float", 1)
    got = module_outputs(module, images)
    assert_outputs_close(got, pytorch_outputs(folder, images, depth=False, segmentation=True))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "export"])
def test_export_check_catches_a_graph_that_differs(folders, torchscript_files, program_files, fmt):
    graph, _ = depth_graph.load_graph(folders["baseline"], depth=True)
    path = {"torchscript": torchscript_files, "export": program_files}[fmt]["baseline"]
    worst = deploy_export.compare_with_pytorch(graph, path, fmt, HEIGHT, WIDTH, batch_sizes=(2,))
    assert set(worst) == {"disp", "depth"} and 0 <= max(worst.values()) <= 1
    with torch.no_grad():
        graph.decoder.depth_decoder.head(0).conv.bias += 1e-3  # a small change of the PyTorch model
    with pytest.raises(deploy_export.ExportMismatch, match="disp at"):
        deploy_export.compare_with_pytorch(graph, path, fmt, HEIGHT, WIDTH, batch_sizes=(2,))


def test_an_export_that_fails_its_check_is_not_left_behind(folders, tmp_path, capsys, monkeypatch):
    def mismatch(graph, path, *args, **kwargs):
        assert os.path.isfile(path)  # the check reads the written file, under its temporary name
        raise deploy_export.ExportMismatch(f"{path} differs from PyTorch")

    monkeypatch.setattr(deploy_export, "compare_with_pytorch", mismatch)
    path = tmp_path / "depth.pt"
    code = utils.run_cli(
        export_model.main,
        ["--load_weights_folder", folders["baseline"], "--format", "torchscript", "--output", str(path)],
    )
    assert code == utils.EXIT_ERROR and "differs from PyTorch" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary


def test_bad_size_and_missing_onnx_get_clear_errors(folders, capsys, monkeypatch):
    with pytest.raises(SystemExit):
        export_model.main(["--load_weights_folder", folders["baseline"], "--height", "100"])
    assert "height must be a positive multiple of 32" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_model.main(["--load_weights_folder", folders["baseline"], "--threads", "0"])
    assert "argument --threads: must be at least 1, got 0" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    with pytest.raises(
        ImportError, match="needs onnx and onnxruntime .*pip install -r requirements/export.txt"
    ):
        export_model.main(["--load_weights_folder", folders["baseline"], "--output", "unused.onnx"])


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "export"])
@pytest.mark.needs("onnx", "onnxruntime")
def test_predict_with_an_exported_file_gives_the_folder_outputs(
    folders, onnx_files, program_files, tmp_path, fmt
):
    tiny = make_tiny_kitti(str(tmp_path), num_frames=3, exts=("png",))
    frames = os.path.join(tiny.data_path, DRIVE, "image_02", "data")
    exported = onnx_files["full"] if fmt == "onnx" else program_files["full"]
    predict.main(
        [
            "--load_weights_folder",
            folders["full"],
            "--image_path",
            frames,
            "--output_dir",
            str(tmp_path / "pt"),
        ]
    )
    option = "--onnx" if fmt == "onnx" else "--exported"  # --onnx: the older name, kept
    predict.main(
        [option, exported, "--image_path", frames, "--output_dir", str(tmp_path / fmt), "--batch_size", "2"]
    )  # batches of 2 and 1
    names = sorted(os.listdir(tmp_path / "pt"))
    assert (
        names == sorted(os.listdir(tmp_path / fmt)) and len(names) == 3 * 4
    )  # disp, depth npy; disp, seg png
    for name in names:
        if name.endswith(".npy"):
            a, b = np.load(tmp_path / fmt / name), np.load(tmp_path / "pt" / name)
            assert a.shape == (HEIGHT, WIDTH)
            np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


@pytest.mark.slow
@pytest.mark.needs("onnx", "onnxruntime")
def test_time_inference_reports_every_backend(folders, torchscript_files, onnx_files, program_files):
    graph, _ = depth_graph.load_graph(folders["baseline"], depth=True)
    backends = (
        "PyTorch eager",
        "torch.export",
        "TorchScript",
        "onnxruntime",
    )  # torch.compile: minutes on 2 cores
    files = {
        "onnxruntime": onnx_files["baseline"],
        "TorchScript": torchscript_files["baseline"],
        "torch.export": program_files["baseline"],
    }
    results = deploy_export.time_inference(
        graph, HEIGHT, WIDTH, runs=1, warmup=0, files=files, backends=backends
    )
    assert list(results) == list(backends) and all(isinstance(v, float) and v > 0 for v in results.values())
    table = deploy_export.format_timing(results, HEIGHT, WIDTH, 1)
    assert "| onnxruntime |" in table and "64x192" in table
    failed = deploy_export.time_inference(
        graph, HEIGHT, WIDTH, runs=1, warmup=0, files={"TorchScript": "missing.pt"}, backends=("TorchScript",)
    )
    assert failed["TorchScript"].startswith("failed: MissingFileError")  # reported, not raised
    with pytest.raises(ValueError, match="unknown backends"):
        deploy_export.time_inference(graph, HEIGHT, WIDTH, backends=("tensorrt",))
    cpu = deploy_export.time_inference(
        graph, HEIGHT, WIDTH, runs=1, warmup=0, backends=("PyTorch eager",), clock="cpu"
    )
    assert cpu["PyTorch eager"] > 0 and "CPU ms / image" in deploy_export.format_timing(
        cpu, HEIGHT, WIDTH, 1, "cpu"
    )


@pytest.mark.slow
@pytest.mark.needs("onnx", "onnxruntime")
def test_one_reader_runs_every_exported_file_with_the_same_outputs(
    folders, torchscript_files, onnx_files, program_files, tmp_path
):
    images = random_images("float", 3, seed=7)
    expected = pytorch_outputs(folders["baseline"], images)
    for path in (onnx_files["baseline"], program_files["baseline"], torchscript_files["baseline"]):
        graph = depth_graph.load_exported(path)
        assert graph.output_names == graph.metadata["outputs"] == ["disp", "depth"], path
        assert graph.metadata["input_type"] == "float" and graph.metadata["height"] == HEIGHT, path
        got = graph(images)
        assert all(isinstance(a, np.ndarray) for a in got), path
        assert_outputs_close(got, expected)
        from_numpy = graph(images.numpy())  # NumPy in, as the README says: the same outputs
        assert all(np.array_equal(a, b) for a, b in zip(from_numpy, got)), path
    with pytest.raises(ValueError, match="not an exported file"):
        depth_graph.load_exported(str(tmp_path / "model.pth"))
    with pytest.raises(FileNotFoundError, match="no such export file"):
        depth_graph.load_exported(str(tmp_path / "missing.pt2"))


@pytest.mark.slow
@pytest.mark.needs("onnx", "onnxruntime", "onnxscript")
def test_onnx_dynamo_exporter_writes_opset_18_that_passes_the_check(folders, tmp_path, capsys):
    import onnx

    path = export(
        folders["full"],
        "onnx",
        str(tmp_path / "dynamo.onnx"),
        *EXPORTS["full"],
        "--onnx_exporter",
        "dynamo",
        check=True,
    )  # the built-in check against PyTorch at batch sizes 1 and 3
    model = onnx.load(path)
    assert [op.version for op in model.opset_import if op.domain in ("", "ai.onnx")] == [18]
    runner = depth_graph.OnnxGraph(path)
    assert runner.output_names == runner.metadata["outputs"] == ["disp", "depth", "seg_logits"]
    images = random_images("uint8", 2, seed=3)
    assert_outputs_close(runner(images), pytorch_outputs(folders["full"], images, "uint8", True, True))
    capsys.readouterr()
    code = utils.run_cli(
        export_model.main,
        [
            "--load_weights_folder",
            folders["full"],
            "--onnx_exporter",
            "dynamo",
            "--opset",
            "17",
            "--output",
            str(tmp_path / "old.onnx"),
        ],
    )
    err = capsys.readouterr().err
    assert (
        code == utils.EXIT_ERROR
        and err.startswith("error: the dynamo ONNX exporter writes opset 18")
        and "Traceback" not in err
    )
    assert not os.path.exists(tmp_path / "old.onnx")
    with pytest.raises(SystemExit):
        export_model.main(["--load_weights_folder", folders["full"], "--format", "export", "--opset", "17"])
    assert "--opset and --onnx_exporter are for --format onnx" in capsys.readouterr().err
