"""Download the public split files into splits/ and check them: ``python -m splits [--check DIR]``."""

import argparse
import logging
import sys

import utils

from . import SplitError, check_copy, download, manifest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "files", nargs="*", help="manifest entries to fetch (default: all), e.g. eigen/test_files.txt"
    )
    parser.add_argument("--check", metavar="DIR", help="only check a local copy against the manifest")
    args = parser.parse_args()
    utils.setup_logging()
    if args.check:
        problems = check_copy(args.check)
        for line in problems:
            logging.error(line)
        logging.info("%s matches the manifest", args.check) if not problems else None
        return 1 if problems else 0
    try:
        for relpath in args.files or list(manifest()["files"]):
            download(relpath)
    except SplitError as err:
        logging.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
