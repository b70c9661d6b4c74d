"""``python train.py --demo``: see the framework work with nothing downloaded.

Generates synthetic scenes in KITTI's layout once (into a cache folder), evaluates the untrained model, trains
the paper's full model for a few minutes (``DEMO_TRAINING``: the settings and why), evaluates again and says
where the logs and weights are; ``--demo_variant stereo`` adds the stereo partner. The scenes' folder holds
the project's marker; a folder of anything else is refused before anything is written. docs/data.md ("What
the demo shows" and the sections after it) gives the whole account."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
from typing import Sequence

import options
from checkpoints import model_folder
from datasets.synthetic import scenes as synthetic_scenes
from evaluation import depth as evaluation_depth
from trainer import Trainer
from training import run_folder, signals
from utils import InputError
from utils.files import OWNER_MARKER, atomic_folder, check_replaceable, owned, read_json, remove_folder

logger = logging.getLogger(__name__)

# The scenes: four drives of 42 frames at KITTI's size (1242x375, one ray per pixel: four rays per
# pixel rendered 3.3 times as long and trained no better, measured); the last drive is held out
# (every 2nd frame: 20 test frames), with texture at every scale on every surface
# (datasets/synthetic/scenes.py).
# The monocular run's scenes move a third of a metre per frame: at KITTI's 1 m the next frame differs
# from the target as much as an unrelated view does, and auto-masking then rewards any warp
# (docs/data.md). The stereo run keeps the 1 m scenes its figures were measured on.
STEREO_SCENES = {
    "num_drives": 4,
    "frames_per_drive": 42,
    "scale": 1.0,
    "supersample": 1,
    "test_stride": 2,
    "seed": 0,
    "version": 2,
}
MONO_SCENES = {**STEREO_SCENES, "metres_per_frame": 0.3333, "version": 3}
DEMO_SCENES = {"mono": MONO_SCENES, "stereo": STEREO_SCENES}
CACHE_FOLDERS = {"mono": "synthetic_kitti_mono", "stereo": "synthetic_kitti"}
# A weights folder every 3 epochs and the newest training state only: each holds Adam's state too (the
# authors' layout), 433 MB at this size.
COMMON = [
    "--batch_size",
    "4",
    "--lr_milestones",
    "--weights_init",
    "scratch",
    "--num_workers",
    "2",
    "--log_frequency",
    "25",
    "--log_dir",
    "demo_runs",
    "--save_frequency",
    "3",
    "--keep_checkpoints",
    "1",
]
# The runs. mono (the default): the paper's recipe (full model, monocular, auto-masking, the authors'
# --min_depth 0.1) from scratch (ImageNet weights may not be reachable) at 96x320 for 9 epochs (243
# steps of batch 4). stereo: the stereo partner as an extra source (Monodepth2's "MS") at 64x192 with
# --min_depth 2, which puts the untrained network's disparity (sigmoid 0.5: about 4 m) inside the
# stereo pair's range; it learns in fewer, cheaper steps.
DEMO_TRAINING = {
    "mono": ["--height", "96", "--width", "320", "--num_epochs", "9", "--model_name", "demo"] + COMMON,
    "stereo": [
        "--height",
        "64",
        "--width",
        "192",
        "--num_epochs",
        "3",
        "--use_stereo",
        "--min_depth",
        "2",
        "--model_name",
        "demo_stereo",
    ]
    + COMMON,
}
COMPLETE_MARKER = "demo_scenes.json"
UNTRAINED_FOLDER = "weights_untrained"  # the untrained model, beside the weights_<epoch> folders
AGAIN = "run the same command again to start it"  # after a Ctrl-C before training began
RESUME = "run the same command with --resume to continue it"  # once training has begun


def default_data_dir(variant: str = "mono") -> str:
    """Where a demo variant's scenes are cached: $FSRE_DEMO_DATA/<folder>, else ~/.cache/fsre_depth/<folder>,
    <folder> synthetic_kitti_mono (monocular) or synthetic_kitti (stereo): each variant its own (an empty
    $FSRE_DEMO_DATA counts as unset, as shells treat it)."""
    cache = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    root = os.environ.get("FSRE_DEMO_DATA") or os.path.join(cache, "fsre_depth")
    return os.path.join(root, CACHE_FOLDERS[variant])


def cached_scenes(data_dir: str) -> dict | None:
    """The settings recorded in a complete copy of scenes in ``data_dir``; None when there is none."""
    recorded = read_json(os.path.join(data_dir, COMPLETE_MARKER))
    return recorded if isinstance(recorded, dict) else None


def ensure_scenes(data_dir: str, scenes: dict) -> str:
    """Generate the scenes unless a complete copy of the same settings is there; return the split folder.

    A folder the demo did not make (utils.files's marker), a file, or another variant's scenes are
    refused with InputError before anything is written."""
    split_dir = os.path.join(data_dir, "splits", "synthetic")
    recorded = cached_scenes(data_dir)
    if recorded == scenes:
        logger.info("using the synthetic scenes in %s", data_dir)
        return split_dir
    other = [v for v, s in DEMO_SCENES.items() if s == recorded and s != scenes]
    if other and owned(data_dir):
        raise InputError(
            f"{data_dir} holds the {other[0]} demo's scenes: give each variant its own --demo_data "
            f"(they are left as they are)"
        )
    if recorded is not None and not owned(data_dir):
        raise InputError(
            f"{data_dir} holds scenes of an earlier version of the demo, without the mark that lets the demo "
            "replace them: they are left as they are; remove the folder yourself to have them made again, "
            "or give another --demo_data"
        )
    check_replaceable(data_dir)  # before the log line says it generates
    logger.info("generating synthetic KITTI scenes into %s (once)", data_dir)
    settings = {k: v for k, v in scenes.items() if k != "version"}
    with atomic_folder(data_dir) as tmp:
        synthetic_scenes.generate(tmp, **settings)
        # the split folder's ground truth is position-independent; the split lists hold relative paths
        with open(os.path.join(tmp, COMPLETE_MARKER), "w") as f:
            json.dump(scenes, f)
    return split_dir


def evaluate(folder: str, data_dir: str, split_dir: str) -> dict:
    """Depth metrics of a model folder on the held-out synthetic drive (median scaling, dense truth)."""
    eval_opts = evaluation_depth.EvaluationOptions(
        data_path=data_dir,
        eval_split=split_dir,
        load_weights_folder=folder,
        num_workers=0,
        output_json=os.path.join(folder, "metrics_synthetic.json"),
    )
    return evaluation_depth.evaluate(eval_opts)


def variant_of(argv: Sequence[str]) -> str:
    """The --demo_variant that ``argv`` asks for (mono by default)."""
    return options.build_parser().parse_args(list(argv)).demo_variant


def demo_argv(argv: Sequence[str], data_dir: str, split_dir: str) -> list[str]:
    """Training arguments: the variant's defaults, the generated data, then the user's own (which win)."""
    return DEMO_TRAINING[variant_of(argv)] + ["--data_path", data_dir, "--split", split_dir] + list(argv)


def free_model_name(log_dir: str, name: str) -> str:
    """``name``, or ``name_2``, ``name_3``, ... if runs are there: a second demo never touches the first."""
    candidate, number = name, 1
    while os.path.exists(os.path.join(log_dir, candidate)):
        number += 1
        candidate = f"{name}_{number}"
    return candidate


def gives_option(argv: Sequence[str], option: str) -> bool:
    """Whether the user's arguments set ``option`` (``--name value`` or ``--name=value``)."""
    return any(arg == option or arg.startswith(option + "=") for arg in argv)


def evaluate_untrained(trainer: Trainer, opts, data_dir: str, split_dir: str) -> dict | None:
    """Metrics of the run's untrained model, saved once as models/weights_untrained: a resumed demo
    evaluates the folder its first part saved (never overwriting it with the resumed weights); None where a
    resumed run has none."""
    folder = os.path.join(trainer.log_path, "models", UNTRAINED_FOLDER)
    if not os.path.isdir(folder):
        if trainer.step > 0:
            logger.info(
                "resumed at step %d, and %s is not there: no untrained model to compare", trainer.step, folder
            )
            return None
        model_folder.save_model_folder(folder, trainer.models, opts)
    print("\nuntrained model on the held-out synthetic drive:")
    return evaluate(folder, data_dir, split_dir)


def run_entries(path: str) -> set[str]:
    """Every file and folder under ``path`` (relative paths; empty when it is not there)."""
    found = set()
    for directory, dirs, files in os.walk(path):
        found |= {os.path.relpath(os.path.join(directory, n), path) for n in dirs + files}
    return found


def undo_run(path: str, before: set[str] | None) -> None:
    """Remove what a run that never trained wrote into its (marked) run folder ``path``: the folder itself
    when the run made it (``before`` None), else the entries not in ``before``."""
    if not owned(path):
        return
    if before is None:
        remove_folder(path)
        return
    for name in sorted(run_entries(path) - before, key=lambda n: n.count(os.sep), reverse=True):
        entry = os.path.join(path, name)
        if os.path.isdir(entry) and not os.path.islink(entry):
            shutil.rmtree(entry, ignore_errors=True)
        elif os.path.lexists(entry):
            os.remove(entry)


def stopped_before_training(path: str, resumed: bool) -> signals.Interrupted:
    """What a Ctrl-C before training began says: the same command again (nothing was kept), or --resume."""
    if resumed:
        return signals.Interrupted(
            signal.SIGINT, path, f"before training went on; the state in {path} is unchanged: {RESUME}"
        )
    return signals.Interrupted(
        signal.SIGINT, path, f"before training began; nothing of the run was kept in {path}: {AGAIN}"
    )


def newest_weights(run_path: str) -> str | None:
    """The run's newest ``weights_<epoch>`` folder (not the untrained one); None without one."""
    numbered = [
        p for p in run_folder.model_folders(run_path) if os.path.basename(p)[len("weights_") :].isdigit()
    ]
    return max(numbered, key=lambda p: int(os.path.basename(p)[len("weights_") :]), default=None)


def run(argv: Sequence[str], data_dir: str | None = None, scenes: dict | None = None) -> dict:
    """Generate (once), evaluate untrained, train, evaluate trained; return both metric dicts."""
    variant = variant_of(argv)
    data_dir = os.path.abspath(data_dir or default_data_dir(variant))
    try:
        split_dir = ensure_scenes(data_dir, scenes or DEMO_SCENES[variant])
    except KeyboardInterrupt:
        raise signals.Interrupted(
            signal.SIGINT, None, f"while generating the scenes into {data_dir}; nothing was kept: {AGAIN}"
        ) from None
    opts = options.parse_args(demo_argv(argv, data_dir, split_dir))
    if not (gives_option(argv, "--model_name") or opts.resume or opts.overwrite):
        name = free_model_name(opts.log_dir, opts.model_name)
        if name != opts.model_name:
            logger.info(
                "%s already holds a demo run: this one goes to %s",
                os.path.join(opts.log_dir, opts.model_name),
                os.path.join(opts.log_dir, name),
            )
            opts = options.parse_args(demo_argv(list(argv) + ["--model_name", name], data_dir, split_dir))
    run_path = os.path.join(opts.log_dir, opts.model_name)
    before = run_entries(run_path) if os.path.isdir(run_path) else None
    if before is not None and opts.overwrite:  # the claim moves the run's own entries aside
        before = {e for e in before if e.split(os.sep)[0] not in run_folder.RUN_ENTRIES or e == OWNER_MARKER}
    try:
        trainer = Trainer(opts)
    except KeyboardInterrupt:
        if opts.resume is None:
            undo_run(run_path, before)
        raise stopped_before_training(run_path, opts.resume is not None) from None
    started = trainer.step > 0 or trainer.last_state is not None
    try:
        untrained = evaluate_untrained(trainer, opts, data_dir, split_dir)
    except KeyboardInterrupt:
        trainer.close()
        if not started:
            undo_run(trainer.log_path, before)
        raise stopped_before_training(trainer.log_path, started) from None
    except BaseException:
        trainer.close()  # also when the first evaluation fails: the run folder is let go at once
        raise
    try:
        trainer.train()
    finally:
        trainer.close()
    folder = trainer.last_model_folder or newest_weights(trainer.log_path)  # a resumed run with nothing left
    if folder is None:
        raise InputError(f"{trainer.log_path} holds no trained weights_<epoch> folder to evaluate")
    print(
        f"\ntrained model ({trainer.step} steps at {opts.height}x{opts.width}) "
        "on the held-out synthetic drive:"
    )
    try:
        after = evaluate(folder, data_dir, split_dir)
    except KeyboardInterrupt:
        raise signals.Interrupted(
            signal.SIGINT,
            trainer.log_path,
            f"while evaluating the trained model; the run is saved in {trainer.log_path}: {RESUME} "
            "(it evaluates the trained model again)",
        ) from None
    untrained_text = "(no untrained model)" if untrained is None else f"{untrained['abs_rel']:.3f}"
    print(
        f"\nabs_rel {untrained_text} -> {after['abs_rel']:.3f}\n"
        f"TensorBoard: tensorboard --logdir {trainer.log_path}\nweights:     {folder}\n"
        f"data:        {data_dir} (KITTI raw layout; train with --data_path {data_dir} --split {split_dir})"
    )
    return {"untrained": untrained, "trained": after, "folder": folder}
