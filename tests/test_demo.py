"""The demo (``train.py --demo``) end to end on small synthetic scenes: the scenes are generated once,
the default run is the paper's monocular full model, and a short run of the stereo variant learns
depth, measured on the held-out drive against the untrained model."""

from __future__ import annotations

import inspect
import os

import pytest
from tb_reader import read_run

import options
from reproduce import demo

# Small scenes: one training drive, one held-out drive.
SCENES = {"num_drives": 2, "frames_per_drive": 40, "scale": 0.2, "seed": 0, "version": 2}
# A short run of the stereo variant's Monodepth2 baseline on the stereo pair alone (the cheapest
# configuration that learns: the monocular demo takes minutes); the README's figures come from the
# whole demo.
STEPS = 150
LEARNED_FRACTION = 0.75  # trained abs_rel must be below this fraction of the untrained model's


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("demo") / "scenes")
    demo.ensure_scenes(data_dir, SCENES)
    return data_dir


@pytest.mark.slow
def test_scenes_are_generated_once(scenes_dir, monkeypatch):
    monkeypatch.setattr(demo.synthetic_scenes, "generate", lambda *a, **k: pytest.fail("generated again"))
    assert demo.ensure_scenes(scenes_dir, SCENES) == os.path.join(scenes_dir, "splits", "synthetic")
    parent = os.path.dirname(scenes_dir)
    assert sorted(os.listdir(parent)) == ["scenes"]  # no temporary or set-aside folder left beside it


@pytest.mark.slow
def test_the_default_demo_is_the_papers_monocular_full_model(scenes_dir):
    opts = options.parse_args(demo.demo_argv(["--demo"], scenes_dir, "S"))
    assert (opts.config, opts.height, opts.width, opts.use_stereo, opts.min_depth) == (
        "full",
        96,
        320,
        False,
        0.1,
    )
    assert opts.frame_ids == [0, -1, 1] and opts.semantic_weight == 0.3 and opts.sgt_weight == 0.1
    assert opts.cma_layers == [0, 1, 2] and opts.split == "S" and opts.weights_init == "scratch"
    assert not opts.disable_automasking  # the paper's recipe, auto-masking included
    assert (opts.num_epochs, opts.save_frequency, opts.keep_checkpoints) == (9, 3, 1)  # three weights folders
    assert set(demo.DEMO_TRAINING) == set(options.DEMO_VARIANTS)
    # --help says what the demo does (it once still said "without auto-masking")
    (demo_help,) = [a.help for a in options.build_parser()._actions if "--demo" in a.option_strings]
    assert "auto-masking" not in demo_help
    assert f"{opts.height}x{opts.width}, {opts.num_epochs} epochs" in demo_help


def test_each_variant_has_its_scenes_and_its_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("FSRE_DEMO_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    asked = []

    def ensure_scenes(data_dir, scenes):
        asked.append((data_dir, scenes))
        raise RuntimeError("stop here")

    monkeypatch.setattr(demo, "ensure_scenes", ensure_scenes)
    for argv in (["--demo"], ["--demo", "--demo_variant", "stereo"]):
        with pytest.raises(RuntimeError, match="stop here"):
            demo.run(argv)
    (mono_dir, mono), (stereo_dir, stereo) = asked
    assert (
        mono_dir == str(tmp_path / "fsre_depth" / "synthetic_kitti_mono")
        and mono["metres_per_frame"] == 0.3333
    )
    assert stereo_dir == str(tmp_path / "fsre_depth" / "synthetic_kitti") and "metres_per_frame" not in stereo
    assert {k: v for k, v in mono.items() if k not in ("metres_per_frame", "version")} == {
        k: v for k, v in stereo.items() if k != "version"
    }  # the same streets, driven three times as slowly
    generate = inspect.signature(demo.synthetic_scenes.generate).parameters
    assert all(key in generate for scenes in (mono, stereo) for key in scenes if key != "version")


@pytest.mark.slow
def test_user_options_override_the_demo_defaults(scenes_dir):
    argv = demo.demo_argv(
        ["--demo", "--demo_variant", "stereo", "--height", "96", "--config", "baseline"], scenes_dir, "S"
    )
    opts = options.parse_args(argv)
    assert (opts.height, opts.width, opts.config, opts.split, opts.weights_init) == (
        96,
        192,
        "baseline",
        "S",
        "scratch",
    )
    assert opts.demo and opts.semantic_weight == 0 and opts.use_stereo and opts.lr_milestones == []
    assert opts.min_depth == 2 and opts.model_name == "demo_stereo"


def test_a_second_demo_gets_a_fresh_run_folder(tmp_path):
    assert demo.free_model_name(str(tmp_path), "demo") == "demo"
    for name in ("demo", "demo_2"):
        (tmp_path / name).mkdir()
    assert demo.free_model_name(str(tmp_path), "demo") == "demo_3"
    assert demo.gives_option(["--model_name=x"], "--model_name") and demo.gives_option(
        ["--model_name", "x"], "--model_name"
    )
    assert not demo.gives_option(["--model_name_suffix"], "--model_name")


@pytest.mark.slow
def test_short_demo_learns_depth(scenes_dir, tmp_path, capsys):
    result = demo.run(
        [
            "--demo_variant",
            "stereo",
            "--config",
            "baseline",
            "--frame_ids",
            "0",
            "--max_steps",
            str(STEPS),
            "--num_epochs",
            "100",
            "--num_workers",
            "0",
            "--log_dir",
            str(tmp_path),
            "--save_frequency",
            "100",
            "--no_validation",
            "--keep_checkpoints",
            "1",
        ],
        scenes_dir,
        SCENES,
    )
    before, after = result["untrained"]["abs_rel"], result["trained"]["abs_rel"]
    assert after < LEARNED_FRACTION * before, (before, after)
    out = capsys.readouterr().out
    assert "abs_rel" in out and "tensorboard --logdir" in out
    scalars, _ = read_run(os.path.join(str(tmp_path), "demo_stereo", "train"))
    assert len(scalars["loss"]) >= 2


@pytest.mark.slow
def test_a_resumed_demo_compares_with_the_untrained_model_its_first_part_saved(scenes_dir, tmp_path, capsys):
    def demo_run(*extra):
        argv = ["--demo_variant", "stereo", "--config", "baseline", "--frame_ids", "0", "--num_workers", "0"]
        argv += ["--log_dir", str(tmp_path), "--no_validation", "--num_epochs", "100", *extra]
        return demo.run(argv, scenes_dir, SCENES)

    first = demo_run("--max_steps", "2")
    untrained = tmp_path / "demo_stereo" / "models" / demo.UNTRAINED_FOLDER
    digests = {f.name: f.read_bytes() for f in untrained.iterdir() if f.suffix == ".pth"}
    resumed = demo_run("--max_steps", "4", "--resume")
    # the untrained folder keeps the untrained weights (it once got the resumed model's, and the demo then
    # printed "abs_rel <resumed> -> <trained>" as if from scratch)
    assert {f.name: f.read_bytes() for f in untrained.iterdir() if f.suffix == ".pth"} == digests
    assert resumed["untrained"] == first["untrained"]
    assert resumed["trained"]["abs_rel"] != first["trained"]["abs_rel"]  # 2 more steps were trained
    out = capsys.readouterr().out
    assert f"abs_rel {first['untrained']['abs_rel']:.3f} -> {resumed['trained']['abs_rel']:.3f}" in out


@pytest.mark.slow
def test_a_stopped_demo_exits_with_the_signals_code_like_any_run(monkeypatch, tmp_path):
    import signal

    import train
    from training import signals

    def stopped(argv, data_dir):
        raise signals.Interrupted(signal.SIGTERM, str(tmp_path / "step_00000003.pth"))

    monkeypatch.setattr(demo, "run", stopped)  # the demo's training stopped by SIGTERM after saving its state
    assert train.main(["--demo"]) == 128 + signal.SIGTERM  # was a traceback
