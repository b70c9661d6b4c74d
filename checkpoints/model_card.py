"""Model cards: what a weights folder holds, in ``model_card.json`` beside its files.

Every model folder this project writes gets one (``save_model_folder``, the released models' cache):
the architecture and encoder, the input size, the configuration, the data (split file and its
sha256, the pseudo-labels' folder), epochs and steps, the project's commit, each file's sha256, and
for released models their source, publisher's checksums, reported metrics and licence. Metrics of an
evaluation (``metrics_*.json`` beside it) are shown with it. ``python -m tools.model_card FOLDER``
prints it, ``--package OUT.zip`` makes a zip to host and prints its registry line; an export copies
it beside the exported file; loading a folder for training refuses options that contradict it.
"""

from __future__ import annotations

import argparse
import functools
import glob
import json
import os
import subprocess
import zipfile

import utils
from checkpoints.files import CHECKSUM_FILE, file_digest, listed_digest, verify_file
from utils.files import OWNER_MARKER, atomic_write, save_json

CARD_FILE = "model_card.json"
CARD_VERSION = 1
GIT_TIMEOUT_S = 10
# What decides a network's keys: a card and the options must agree on these for the networks loaded.
ARCHITECTURE_KEYS = {
    "encoder": ("encoder",),
    "decoder": ("scales", "semantics", "num_classes", "cma_layers", "num_heads", "cma_ratio"),
    "pose_encoder": ("pose_encoder",),
    "pose": (),
}
CONFIGURATION_KEYS = (
    "config",
    "frame_ids",
    "use_stereo",
    "min_depth",
    "max_depth",
    "semantic_weight",
    "sgt_weight",
    "batch_size",
    "learning_rate",
    "num_epochs",
    "weights_init",
    "seed",
)
# files a card does not list: itself, the listing of all, the project's ownership marker
NOT_LISTED = (CARD_FILE, CHECKSUM_FILE, OWNER_MARKER)
OPTIMIZER_FILE = "adam.pth"  # not packaged: training state, not the model


@functools.lru_cache(maxsize=1)
def project_commit() -> str | None:
    """The project's git commit (with ``-dirty`` when it has uncommitted changes), or None outside git."""
    try:
        run = functools.partial(
            subprocess.run, cwd=utils.PROJECT_DIR, capture_output=True, text=True, timeout=GIT_TIMEOUT_S
        )
        head = run(["git", "rev-parse", "HEAD"])
        if head.returncode != 0:
            return None
        dirty = run(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def architecture_of_options(opts: argparse.Namespace) -> dict:
    """The options that decide the networks' keys, as a card records them."""
    import options

    semantics = options.uses_semantics(opts)
    cma = sorted(opts.cma_layers) if semantics else []
    return {
        "encoder": opts.encoder,
        "pose_encoder": opts.pose_encoder,
        "scales": sorted(opts.scales),
        "semantics": semantics,
        "num_classes": opts.num_classes if semantics else None,
        "cma_layers": cma,
        "num_heads": opts.num_heads if cma else None,
        "cma_ratio": opts.cma_ratio if cma else None,
    }


def architecture_of_spec(spec) -> dict:
    """``architecture_of_options`` of a folder read from its keys (model_folder.ModelSpec)."""
    cma = sorted(spec.cma_layers)
    return {
        "encoder": spec.encoder,
        "pose_encoder": spec.pose_encoder,
        "scales": sorted(spec.scales),
        "semantics": spec.semantics,
        "num_classes": spec.num_classes if spec.semantics else None,
        "cma_layers": cma,
        "num_heads": spec.num_heads if cma else None,
        "cma_ratio": spec.cma_ratio if cma else None,
    }


def split_record(opts: argparse.Namespace) -> dict:
    """The training split and the sha256 of its train_files.txt (a custom folder's, or the published
    one's as the split manifest records it)."""
    import splits

    split = getattr(opts, "split", None)
    record = {"split": split, "train_files_sha256": None}
    if split and os.path.isdir(split):
        path = os.path.join(split, "train_files.txt")
        record["train_files_sha256"] = file_digest(path) if os.path.isfile(path) else None
    elif split:
        listed = splits.manifest().get("files", {}).get(f"{split}/train_files.txt") or {}
        record["train_files_sha256"] = listed.get("sha256")
    return record


def training_card(opts: argparse.Namespace, epoch: int, step: int) -> dict:
    """The card of a folder written by training."""
    import options

    labels = None
    if options.needs_labels(opts):
        labels = getattr(opts, "seg_path", None) or os.path.join(opts.data_path, "segmentation")
    return {
        "card_version": CARD_VERSION,
        "name": getattr(opts, "model_name", None),
        "architecture": architecture_of_options(opts),
        "height": opts.height,
        "width": opts.width,
        "configuration": {k: getattr(opts, k) for k in CONFIGURATION_KEYS if hasattr(opts, k)},
        "data": {
            "dataset": getattr(opts, "dataset", None),
            **split_record(opts),
            "data_path": getattr(opts, "data_path", None),
            "pseudo_labels": labels,
        },
        "training": {"epoch": epoch, "step": step, "num_epochs": getattr(opts, "num_epochs", None)},
        "metrics": None,
        "commit": project_commit(),
        "options_file": "opt.json (every option)",
    }


def released_card(name: str, info: dict, archive: dict, spec, folder: str) -> dict:
    """The card of a released model unpacked into ``folder``: its own card when the zip held one (a
    packaged model of this project), else one from the registry entry and the files' keys; with the
    source and the archive's checksums."""
    card = read_card(folder) or {
        "card_version": CARD_VERSION,
        "name": name,
        "architecture": architecture_of_spec(spec),
        "height": spec.height,
        "width": spec.width,
        "configuration": {
            "use_stereo": spec.use_stereo,
            "min_depth": spec.min_depth,
            "max_depth": spec.max_depth,
        },
        "data": {k: info.get(k) for k in ("data", "supervision")},
        "training": None,
        "metrics": info.get("metrics"),
        "commit": None,
    }
    card["released"] = {
        "name": name,
        "publisher": info.get("publisher"),
        "layout": spec.layout,
        "description": info.get("architecture"),
        "imagenet_pretrained": info.get("imagenet_pretrained"),
        "evaluation": info.get("eval"),
        "licence": info.get("licence"),
        "source": info.get("source"),
        "urls": info.get("urls"),
        "archive": archive,
        "published_checksum": "md5" if info.get("md5") else "sha256" if info.get("sha256") else None,
    }
    return card


def folder_files(folder: str) -> dict:
    """sha256 of every file of a folder that a card lists."""
    names = sorted(
        n for n in os.listdir(folder) if n not in NOT_LISTED and os.path.isfile(os.path.join(folder, n))
    )
    return {n: file_digest(os.path.join(folder, n)) for n in names}


def write_card(card: dict, folder: str) -> None:
    """Write ``card`` with the sha256 of the folder's files into ``folder``/model_card.json, atomically."""
    save_json({**card, "files": folder_files(folder)}, os.path.join(folder, CARD_FILE))


def read_card(folder: str) -> dict | None:
    """A folder's card, or None without one; InputError naming the file when it is not a card."""
    path = os.path.join(folder, CARD_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            card = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise utils.InputError(f"{path}: not a readable model card ({err})") from None
    if not isinstance(card, dict):
        raise utils.InputError(f"{path}: not a model card (a JSON {type(card).__name__})")
    return card


def describe(folder: str) -> dict:
    """A folder's card (or, without one, what its files say), with the metrics of its evaluations."""
    from checkpoints import model_folder

    card = read_card(folder)
    if card is None:
        spec = model_folder.inspect_model_folder(folder)  # checks each file it reads against its checksum
        card = {
            "card_version": None,
            "note": f"no {CARD_FILE} (written by an older version, or unpacked by hand): what its files say",
            "architecture": architecture_of_spec(spec),
            "height": spec.height,
            "width": spec.width,
            "layout": spec.layout,
            "configuration": saved_configuration(folder),
            "checksums": checksum_status(folder),
            "files": folder_files(folder),
        }
    evaluated = {}
    for path in sorted(glob.glob(os.path.join(folder, "metrics_*.json"))):
        with open(path, encoding="utf-8") as f:
            evaluated[os.path.basename(path)] = json.load(f)
    if evaluated:
        card["evaluations"] = evaluated
    return card


def saved_configuration(folder: str) -> dict | None:
    """The card's configuration read from the folder's ``opt.json`` (every option of its run), or None."""
    import options
    from checkpoints.model_folder import OPTIONS_FILE

    path = os.path.join(folder, OPTIONS_FILE)
    if not os.path.isfile(path):
        return None
    verify_file(path)
    saved = options.read_options_file(path)
    return {k: saved[k] for k in CONFIGURATION_KEYS if k in saved}


def checksum_status(folder: str) -> str:
    """Whether the folder's ``checksums.sha256`` lists its files and each digest matches, in words."""
    path = os.path.join(folder, CHECKSUM_FILE)
    if not os.path.isfile(path):
        return f"no {CHECKSUM_FILE}: the files cannot be checked"
    files = folder_files(folder)
    listed = {n: listed_digest(os.path.join(folder, n)) for n in files}
    wrong = sorted(n for n, digest in files.items() if listed[n] is not None and listed[n] != digest)
    unlisted = sorted(n for n in files if listed[n] is None)
    if wrong:
        return f"DAMAGED: {', '.join(wrong)} differ from {CHECKSUM_FILE}"
    return f"{len(files) - len(unlisted)} files match {CHECKSUM_FILE}" + (
        f"; not listed: {', '.join(unlisted)}" if unlisted else ""
    )


def format_card(card: dict, indent: int = 0) -> str:
    """A card as indented ``key: value`` lines."""
    lines = []
    for key, value in card.items():
        if isinstance(value, dict) and value:
            lines.append(" " * indent + f"{key}:")
            lines.append(format_card(value, indent + 2))
        else:
            lines.append(
                " " * indent + f"{key}: {json.dumps(value) if not isinstance(value, str) else value}"
            )
    return "\n".join(lines)


def check_options(folder: str, opts: argparse.Namespace, networks: list[str] | None = None) -> None:
    """Refuse (InputError listing each difference) options that contradict the card of ``folder`` for the
    networks loaded; a folder without a card is not checked here (its keys still are)."""
    card = read_card(folder)
    if card is None or not isinstance(card.get("architecture"), dict):
        return
    recorded, wanted = card["architecture"], architecture_of_options(opts)
    keys = [k for net in networks or list(ARCHITECTURE_KEYS) for k in ARCHITECTURE_KEYS.get(net, ())]
    differ = [
        f"{k} {json.dumps(recorded[k])} in the card, {json.dumps(wanted[k])} in the options"
        for k in keys
        if k in recorded and recorded[k] is not None and recorded[k] != wanted[k]
    ]
    if differ:
        raise utils.InputError(
            f"{os.path.join(folder, CARD_FILE)} contradicts the options: {'; '.join(differ)} "
            f"(give the card's values, or --models_to_load without the networks that differ)"
        )


def copy_beside(folder: str, exported: str, extra: dict) -> str:
    """Write the folder's card (``describe``) with ``extra`` (the exported file's format, sha256) beside an
    exported file, as <file>.card.json; return its path."""
    path = exported + ".card.json"
    save_json({**describe(folder), "exported": extra}, path)
    return path


def package(folder: str, output: str, name: str, url: str | None = None) -> dict:
    """Zip a model folder to host (its files at the top, as Monodepth2's zips; not the optimizer state),
    atomically; return its registry entry."""
    from checkpoints import model_folder, released

    spec = model_folder.inspect_model_folder(folder)
    card = describe(folder)
    names = sorted(
        n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n)) and n != OPTIMIZER_FILE
    )
    names = [n for n in names if n.endswith(released.MODEL_SUFFIXES)]
    with atomic_write(output) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for n in names:
                z.write(os.path.join(folder, n), n)
        hashes = released.file_hashes(tmp)
    file = os.path.basename(output)
    source = card.get("released") or {}
    return {
        name: {
            "publisher": source.get("publisher"),
            "urls": [f"{url.rstrip('/')}/{file}" if url else f"<URL of {file}>"],
            "file": file,
            "md5": hashes["md5"],
            "sha256": hashes["sha256"],
            "size": hashes["size"],
            "layout": spec.layout,
            "architecture": source.get("description") or ("FSRE-Depth" if spec.semantics else "Monodepth2"),
            "encoder": spec.encoder,
            "imagenet_pretrained": (card.get("configuration") or {}).get("weights_init") != "scratch",
            "height": spec.height,
            "width": spec.width,
            "data": json.dumps(card.get("data")),
            "supervision": source.get("supervision") or json.dumps(card.get("configuration")),
            "metrics": card.get("metrics") or next(iter((card.get("evaluations") or {}).values()), None),
            "licence": source.get("licence"),
            "commit": card.get("commit"),
        }
    }
