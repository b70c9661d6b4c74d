"""Print a model folder's card: ``python -m tools.model_card FOLDER [--package OUT.zip --name NAME]``.

The card (checkpoints/model_card.py) says what the folder holds: architecture, input size,
configuration, data, training, metrics, the project's commit and each file's sha256; a folder
without one (e.g. an authors' zip unpacked by hand) is described from its files' keys.
``--package OUT.zip`` writes a zip of the folder ready to host (not the optimizer state) and prints
the registry entry that names it (its md5, sha256 and size), for checkpoints/released_models.json
or a lab's own registry file ($FSRE_MODELS_REGISTRY).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Sequence

import utils
from checkpoints import model_card, model_folder

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=utils.HelpFormatter)
    parser.add_argument("folder", help="model folder")
    parser.add_argument("--json", action="store_true", help="print the card as JSON")
    parser.add_argument("--package", metavar="OUT.zip", default=None, help="write a zip to host")
    parser.add_argument(
        "--name", default=None, help="the model's name in the registry entry (default: the zip's name)"
    )
    parser.add_argument(
        "--url", default=None, help="where the zip will be hosted (a base URL) for the registry entry"
    )
    opts = parser.parse_args(argv)
    utils.setup_logging()
    model_folder.check_folder(opts.folder)
    card = model_card.describe(opts.folder)
    if opts.package is None:
        sys.stdout.write((json.dumps(card, indent=2) if opts.json else model_card.format_card(card)) + "\n")
        return 0
    if not opts.package.endswith(".zip"):
        parser.error(f"--package {opts.package}: give a .zip file name")
    name = opts.name or os.path.splitext(os.path.basename(opts.package))[0]
    line = model_card.package(opts.folder, opts.package, name, opts.url)
    logger.info("wrote %s; its registry entry:", opts.package)
    sys.stdout.write(json.dumps(line, indent=2)[1:-1].strip() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(utils.run_cli(main))
