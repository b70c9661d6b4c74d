"""The figure family: the magma colour map, the qualitative comparison figure (layout, panels equal to the
models' predictions, frame selection) and the per-class chart."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import options
import utils
from checkpoints import model_folder
from datasets import CLASS_NAMES
from datasets.ground_truth import load_ground_truth
from datasets.synthetic import scenes
from evaluation import depth as evaluation_depth
from model import FSREModel
from reproduce import figures, per_class
from utils.colormap import DISPARITY_PERCENTILE, MAGMA, colormap

HEIGHT, WIDTH = 64, 192


def test_colormap_known_entries():
    """The first and last entries of matplotlib's magma (its float table x 255, truncated), no matplotlib
    needed."""
    rgb = colormap(np.array([[0.0, 0.5, 1.0, 2.0]]), vmax=1.0)
    assert rgb[0, 0].tolist() == [0, 0, 3] and rgb[0, 2].tolist() == [251, 252, 191] == rgb[0, 3].tolist()
    assert MAGMA.shape == (256, 3) and (np.diff(MAGMA.astype(int).sum(1)) >= 0).all()  # dark to light


@pytest.mark.needs("matplotlib")
def test_colormap_equals_matplotlibs_magma():
    import matplotlib

    values = np.concatenate([np.random.default_rng(0).uniform(-0.1, 1.3, 5000), np.linspace(0, 1, 257)])
    vmax = 1.0
    expected = matplotlib.colormaps["magma"](np.clip(values / vmax, 0, 1), bytes=True)[..., :3]
    np.testing.assert_array_equal(colormap(values, vmax=vmax), expected)
    disp = np.random.default_rng(1).uniform(0.01, 0.3, (20, 30))  # the default vmax: the 95th percentile
    t = np.clip(disp / np.percentile(disp, DISPARITY_PERCENTILE), 0, 1)
    np.testing.assert_array_equal(colormap(disp), matplotlib.colormaps["magma"](t, bytes=True)[..., :3])


def test_class_restricted_abs_rel_by_hand():
    gt = np.full((8, 10), 10.0, dtype=np.float32)
    disp = np.full((8, 10), 0.1, dtype=np.float32)  # depth 10 everywhere...
    disp[:, :5] = 0.05  # ...but 20 m on the left half
    ids = np.zeros((8, 10), dtype=np.uint8)  # road
    ids[:4, :5] = per_class.class_ids(["pole"])[0]  # a pole in the top left: all of it at 20 m
    sums = per_class.class_sums(gt, disp, ids, len(CLASS_NAMES), False, False, 1.0)
    assert per_class.abs_rel_of_classes(sums, per_class.class_ids(["pole"])) == pytest.approx(1.0)
    assert per_class.abs_rel_of_classes(sums, per_class.class_ids(["road"])) == pytest.approx(20 / 60)
    assert np.isnan(per_class.abs_rel_of_classes(sums, per_class.class_ids(["person", "rider"])))
    scores = figures.per_image_class_abs_rel(
        disp[None], [gt], [ids], per_class.class_ids(["pole"]), len(CLASS_NAMES), False, False, 1.0
    )
    assert scores.tolist() == pytest.approx([1.0])


def test_most_improved_orders_by_gain_and_skips_unscored_frames():
    reference = np.array([0.3, 0.2, np.nan, 0.5, 0.1])
    target = np.array([0.1, 0.25, 0.1, 0.2, 0.1])
    assert figures.most_improved(reference, target, 3) == [3, 0, 4]


# ---------------------------------------------------------------------------------------------
# the qualitative figure, end to end on synthetic scenes
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("scenes"))
    split_dir = scenes.generate(
        out, num_drives=2, frames_per_drive=7, scale=0.2, seed=5, test_stride=1, val_stride=2, workers=1
    )
    folders = {}
    for name, config in (("baseline", "baseline"), ("full", "full")):
        opts = options.parse_args(
            [
                "--config",
                config,
                "--height",
                str(HEIGHT),
                "--width",
                str(WIDTH),
                "--weights_init",
                "scratch",
                "--seed",
                str(len(folders)),
            ]
        )
        torch.manual_seed(len(folders))
        folders[name] = model_folder.save_model_folder(
            os.path.join(out, "models", name), FSREModel(opts).networks(), opts
        )
    return out, split_dir, folders


def predictions(folder: str, data_path: str, split_dir: str) -> np.ndarray:
    encoder, decoder, spec = model_folder.load_depth_model(folder)
    loader = evaluation_depth.test_loader(
        data_path, os.path.join(split_dir, "test_files.txt"), spec, False, "png", 4, 0
    )
    return evaluation_depth.predict_disparities(encoder, decoder, loader, spec, torch.device("cpu"))


def test_row_names_fit_their_panels():
    # 0.3 in = 21.6 pt of panel height; characters are 0.6 font sizes wide
    assert figures.row_label("input", 0.3) == ("input", figures.LABEL_FONT_PT)  # 5 x 0.6 x 6 pt = 18 pt: fits
    text, size = figures.row_label(
        "full (M, demo)", 0.5
    )  # 36 pt: 14 x 3.6 pt = 50.4 pt does not fit on one line
    assert text == "full (M,\ndemo)" and size == figures.LABEL_FONT_PT  # two lines of at most 8 characters do
    text, size = figures.row_label("error baseline (MS)", 0.3)  # two lines, the longest 13 characters
    assert (
        text == "error\nbaseline (MS)" and size == figures.MIN_LABEL_PT
    )  # 21.6 / (0.6 x 13) = 2.8 pt, floored at 4


@pytest.mark.slow
@pytest.mark.needs("matplotlib")
def test_figure_layout_panels_and_selection(scene, tmp_path):
    from tools import figures as figures_tool

    data_path, split_dir, folders = scene
    preds = {name: predictions(folder, data_path, split_dir) for name, folder in folders.items()}
    ext = tmp_path / "other.npy"
    np.save(
        ext, np.ascontiguousarray(preds["baseline"][:, ::-1])
    )  # "another method": the baseline upside down
    stem = str(tmp_path / "fig")
    figures_tool.main(
        [
            "--data_path",
            data_path,
            "--eval_split",
            split_dir,
            "--num_workers",
            "0",
            "--load_weights_folder",
            folders["baseline"],
            folders["full"],
            "--names",
            "baseline",
            "full",
            "--ext_disp",
            f"other={ext}",
            "--num_frames",
            "3",
            "--reference",
            "other",
            "--target",
            "full",
            "--ground_truth",
            "--error",
            "--segmentation",
            "--width",
            "column",
            "--output",
            stem,
        ]
    )
    saved = np.load(stem + "_panels.npz", allow_pickle=False)
    panels, rows = saved["panels"], saved["row_names"].tolist()
    frames = saved["frames"].tolist()
    assert rows == [
        "input",
        "baseline",
        "full",
        "other",
        "ground truth",
        "error baseline",
        "error full",
        "error other",
        "labels",
    ]
    assert panels.shape == (9, 3, HEIGHT, WIDTH, 3) and panels.dtype == np.uint8

    # the frames: where "full" improves most over "other" by AbsRel (evaluate_depth's own per-image metrics)
    gt = load_ground_truth(os.path.join(split_dir, "gt_depths.npz"))
    abs_rel = {
        name: evaluation_depth.evaluate_predictions(p, gt, False, True)[0][:, 0]
        for name, p in {**preds, "other": np.load(ext)}.items()
    }
    gain = abs_rel["other"] - abs_rel["full"]
    assert frames == np.argsort(-gain, kind="stable")[:3].tolist()
    report = json.load(open(stem + ".json"))
    assert report["frames"] == frames and report["scores"]["full"] == pytest.approx(
        abs_rel["full"][frames].tolist()
    )

    # each depth panel is the model's prediction of that frame in magma; the error panels are not
    for r, name in ((1, "baseline"), (2, "full")):
        for c, f in enumerate(frames):
            np.testing.assert_array_equal(panels[r, c], colormap(preds[name][f]))
    np.testing.assert_array_equal(panels[3, 0], colormap(preds["baseline"][frames[0]][::-1]))
    assert not np.array_equal(panels[5, 0], panels[1, 0])
    # the input panel is the frame the models read; the ground-truth panel has dense synthetic depth (little
    # grey)
    with Image.open(
        os.path.join(
            data_path,
            report["lines"][0].split()[0],
            "image_02",
            "data",
            f"{int(report['lines'][0].split()[1]):010d}.png",
        )
    ) as frame:
        expected = np.asarray(frame.resize((WIDTH, HEIGHT), Image.LANCZOS))
    assert np.abs(panels[0, 0].astype(int) - expected).max() <= 1
    assert (panels[4, 0] == figures.NO_DATA).all(-1).mean() < 0.5

    # the figure: a column wide, the height that keeps the panels' aspect, PNG and PDF
    with Image.open(stem + ".png") as png:
        grid = figures.Grid(panels, rows, [f"frame {f}" for f in frames])
        expected_size = (round(3.25 * 300), round(figures.grid_height_in(grid, 3.25) * 300))
        assert abs(png.size[0] - expected_size[0]) <= 1 and abs(png.size[1] - expected_size[1]) <= 1
    assert open(stem + ".pdf", "rb").read(5) == b"%PDF-"
    figure = figures.draw_grid(grid, "column")
    assert len(figure.axes) == 9 * 3
    for k, axes in enumerate(figure.axes):
        np.testing.assert_array_equal(axes.images[0].get_array(), panels[k // 3, k % 3])


@pytest.mark.slow
@pytest.mark.needs("matplotlib")
def test_thin_selection_and_bad_input(scene, tmp_path, capsys):
    from tools import figures as figures_tool

    data_path, split_dir, folders = scene
    stem = str(tmp_path / "thin")
    figures_tool.main(
        [
            "--data_path",
            data_path,
            "--eval_split",
            split_dir,
            "--num_workers",
            "0",
            "--load_weights_folder",
            folders["baseline"],
            folders["full"],
            "--select",
            "thin",
            "--num_frames",
            "2",
            "--output",
            stem,
        ]
    )
    report = json.load(open(stem + ".json"))
    assert report["select"] == "thin" and report["rows"] == ["input", "baseline", "full"]
    assert all(np.isfinite(report["scores"]["full"]))  # only frames with poles or signs in view are scored
    code = utils.run_cli(
        figures_tool.main,
        [
            "--data_path",
            data_path,
            "--eval_split",
            split_dir,
            "--ext_disp",
            f"x={tmp_path / 'missing.npy'}",
            "--frames",
            "0",
        ],
    )
    assert code == utils.EXIT_ERROR and "missing.npy" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# the per-class chart
# ---------------------------------------------------------------------------------------------
@pytest.mark.needs("matplotlib")
def test_per_class_chart_names_classes_and_skips_absent_ones(tmp_path):
    from reproduce import charts

    rows = [None] * len(CLASS_NAMES)
    light = CLASS_NAMES.index("traffic light")
    results = {"baseline": list(rows), "full": list(rows)}
    for name, value in (("baseline", 0.2), ("full", 0.1)):
        results[name][0] = {"abs_rel": value + 0.05}  # road
        results[name][light] = {"abs_rel": value}
    results["full"][CLASS_NAMES.index("person")] = {"abs_rel": 0.3}  # seen by one model only
    figure = charts.per_class_chart(results, CLASS_NAMES, "abs_rel", str(tmp_path / "chart"), "column")
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["road", "traffic light", "person"]
    heights = sorted(round(p.get_height(), 6) for p in axes.patches)
    assert heights == [0.1, 0.15, 0.2, 0.25, 0.3]
    assert os.path.getsize(tmp_path / "chart.pdf") > 0
    with Image.open(tmp_path / "chart.png") as png:
        assert png.size[0] == round(3.25 * 300)
