"""Released models and data by name: the registry (``released_models.json``, more entries in
``$FSRE_MODELS_REGISTRY``), the download and its checks, and the cache.

``--model NAME`` resolves to ``<cache>/NAME``; a cached model makes no request and writes nothing. Otherwise
the zip is fetched (mirror first, resumable, one process per file), verified, unpacked as untrusted into a
marked temporary folder renamed into place, loaded with ``weights_only=True``, and given its model card and
checksums. docs/released_models.md gives the rules."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import stat
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from typing import Callable, Iterator

from tqdm import tqdm

import utils
from checkpoints.files import READ_CHUNK
from utils.files import (
    OwnershipError,
    atomic_folder,
    atomic_write,
    check_replaceable,
    mark_owned,
    owned,
    save_json,
)
from utils.locks import FileLock

logger = logging.getLogger(__name__)

REGISTRY_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "released_models.json")
CACHE_ENV = "FSRE_MODELS_DIR"  # root of the cache (default DEFAULT_CACHE)
MIRROR_ENV = "FSRE_MODELS_MIRROR"  # a base URL or a folder, tried before the publishers' URLs
REGISTRY_ENV = "FSRE_MODELS_REGISTRY"  # a JSON file of more entries, e.g. a lab's own models
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "fsre_depth", "models")
DOWNLOADS = "downloads"  # <cache>/downloads/<file>: finished and partial (<file>.part) zips
PARTIAL_SUFFIX = ".part"
LOCK_SUFFIX = ".lock"  # <cache>/downloads/<file>.lock: one fetch of a file at a time (an OS lock, flock)
TRUSTED_FILE = "trusted_sha256.json"  # first downloads' sha256 of entries that publish no checksum
TIMEOUT_S = 60  # per socket operation of a download
USER_AGENT = "fsre-depth"
HTTP_PARTIAL, HTTP_RANGE_NOT_SATISFIABLE = 206, 416
HTML_START = (b"<!doctype", b"<html")  # what Drive serves instead of a file it will not hand out
# Unpacking an untrusted zip: limits far above the largest real archive, far below a bomb's.
MODEL_LIMITS = (2 << 30, 64)  # (bytes unpacked, files)
DATA_LIMITS = (64 << 30, 500_000)
MAX_RATIO = 100  # uncompressed / compressed size of one member beyond which it is taken for a bomb
MODEL_SUFFIXES = (".pth", ".json", ".sha256", ".txt", ".md")  # members unpacked from a model zip
DATA_SUFFIXES = (".png",)  # members unpacked from a pseudo-label zip
DATA_TOP = "segmentation"  # the folder at the top of the authors' segmentation.zip, dropped when unpacking
MODEL_MARK = "encoder.pth"  # the file that marks a model folder inside a zip
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # an entry's name: a folder of the cache
FILE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*\.zip$")  # an archive's name: no folder in it
REQUIRED = {"models": ("urls", "encoder", "height", "width"), "data": ("urls",)}  # fields of every entry
HEX_LENGTHS = {"md5": 32, "sha256": 64}
URL_SCHEMES = ("http", "https", "file")
LIST_OPTION = "--list_models"
CLOSE_NAMES = 3  # names an unknown --model's message suggests


class DownloadError(utils.InputError):
    """A released file that cannot be fetched, fails its check or is not a safe archive."""


@dataclass
class Entry:
    """One registry entry: a released model or data archive."""

    name: str
    kind: str  # "models" or "data"
    info: dict

    @property
    def file(self) -> str:
        """The archive's file name (in the downloads folder and on a mirror)."""
        return self.info.get("file") or f"{self.name}.zip"


# -- registry ----------------------------------------------------------------------------------
def check_entry(file: str, kind: str, name: str, info: object) -> None:
    """Refuse (InputError naming the registry file and entry) an entry that cannot be fetched safely: a
    name or archive name that is not a plain file name (no ``..``, no folder), a missing field, a URL
    that is not http(s), a checksum or size of the wrong form."""
    where = f"{file}: {kind} entry {name!r}"
    if not NAME_PATTERN.match(name):
        raise utils.InputError(
            f"{where}: a name is letters, digits and _.+- (it names a folder of the cache)"
        )
    if not isinstance(info, dict):
        raise utils.InputError(f"{where}: not a JSON object of fields")
    missing = [k for k in REQUIRED[kind] if info.get(k) in (None, "", [])]
    if missing:
        raise utils.InputError(
            f"{where}: no {', '.join(missing)} (every {kind} entry gives {REQUIRED[kind]})"
        )
    urls = info["urls"]
    if not isinstance(urls, list) or not all(
        isinstance(u, str) and urllib.parse.urlparse(u).scheme in URL_SCHEMES[:2] for u in urls
    ):
        raise utils.InputError(f"{where}: urls must be a list of http(s) URLs, got {json.dumps(urls)}")
    archive = info.get("file")
    if archive is not None and not (isinstance(archive, str) and FILE_PATTERN.match(archive)):
        raise utils.InputError(
            f"{where}: file {json.dumps(archive)} is not a plain NAME.zip (no folder in it)"
        )
    for key, length in HEX_LENGTHS.items():
        value = info.get(key)
        if value is not None and not (
            isinstance(value, str) and re.fullmatch(f"[0-9a-f]{{{length}}}", value)
        ):
            raise utils.InputError(f"{where}: {key} {json.dumps(value)} is not {length} lowercase hex digits")
    size = info.get("size")
    if size is not None and not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
        raise utils.InputError(f"{where}: size {json.dumps(size)} is not a number of bytes")


def read_registry(path: str | None = None) -> dict:
    """The registry's {"models": {...}, "data": {...}}, with the entries of ``$FSRE_MODELS_REGISTRY``
    (checked: ``check_entry``; a name of the built-in registry is refused there)."""
    paths = [path or REGISTRY_FILE] + ([os.environ[REGISTRY_ENV]] if os.environ.get(REGISTRY_ENV) else [])
    registry: dict = {"models": {}, "data": {}}
    for file in paths:
        try:
            with open(file, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise utils.MissingFileError(f"{file}: no such registry file ({REGISTRY_ENV}?)") from None
        except (ValueError, UnicodeDecodeError) as err:
            raise utils.InputError(f"{file}: not a readable registry ({err})") from None
        except OSError as err:
            raise utils.InputError(f"{file}: cannot read the registry ({err.strerror or err})") from None
        if not isinstance(data, dict) or not all(isinstance(data.get(k, {}), dict) for k in registry):
            raise utils.InputError(f'{file}: not a registry (a JSON object with "models": {{NAME: {{...}}}})')
        for kind in registry:
            for name, info in data.get(kind, {}).items():
                check_entry(file, kind, name, info)
                if name in registry[kind]:
                    raise utils.InputError(
                        f"{file}: {kind} entry {name!r} is a name of {paths[0]} already: give it another "
                        f"name (to host copies of a released model, set {MIRROR_ENV})"
                    )
                registry[kind][name] = info
    return registry


def entry(name: str, kind: str = "models") -> Entry:
    """A registry entry by name; InputError listing the names for an unknown one."""
    entries = read_registry()[kind]
    if name not in entries:
        what = "--model" if kind == "models" else "data"
        close = [n for n in entries if name.lower() in n.lower()] + difflib.get_close_matches(
            name, list(entries)
        )
        close = list(dict.fromkeys(close))[:CLOSE_NAMES]
        hint = f"did you mean {' or '.join(close)}?" if close else f"known: {', '.join(entries)}"
        raise utils.InputError(f"{what} {name}: nothing released of that name; {hint} ({LIST_OPTION})")
    return Entry(name, kind, entries[name])


def models_table() -> str:
    """The released models as a table: name, what it is, its input size, the publisher's AbsRel."""
    rows = [("name", "architecture", "encoder", "input", "supervision", "AbsRel", "licence")]
    for name, info in read_registry()["models"].items():
        metrics = info.get("metrics") or {}
        rows.append(
            (
                name,
                str(info.get("architecture", "?")).split(" (")[0],
                f"{info.get('encoder', '?')}{'' if info.get('imagenet_pretrained', True) else ' (scratch)'}",
                f"{info.get('height', '?')}x{info.get('width', '?')}",
                str(info.get("supervision", "?")).split(" (")[0],
                str(metrics.get("abs_rel", "-")),
                str(info.get("licence", "?")).split(" (")[0],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


class ListModels(argparse.Action):
    """``--list_models``: print the released models and exit (before required options are checked)."""

    def __init__(self, option_strings, dest, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        sys.stdout.write(models_table() + "\n")
        parser.exit(0)


def add_model_option(container, parser: argparse.ArgumentParser) -> None:
    """``--model NAME`` in ``container`` (a parser or a mutually exclusive group beside
    --load_weights_folder) and ``--list_models`` in ``parser``."""
    container.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="a released model by name (--list_models), downloaded and cached on first use "
        "(docs/released_models.md)",
    )
    parser.add_argument(LIST_OPTION, action=ListModels, help="print the released models and exit")


def resolve_model_option(opts: argparse.Namespace) -> None:
    """Replace ``--model NAME`` by the cached folder in ``opts.load_weights_folder`` (downloading it once)."""
    name = getattr(opts, "model", None)
    if not name:
        return
    if getattr(opts, "load_weights_folder", None):
        raise utils.InputError("--model and --load_weights_folder name two models: give one")
    opts.load_weights_folder = fetch_model(name)


def resolve_training_weights(opts: argparse.Namespace) -> None:
    """Training's ``--model NAME`` becomes its cached folder in ``--load_weights_folder`` (fetched once); a
    folder whose model card contradicts the options for the networks to load is refused with the
    difference, before any work."""
    from checkpoints import model_card

    resolve_model_option(opts)
    if opts.load_weights_folder:
        model_card.check_options(opts.load_weights_folder, opts, opts.models_to_load)


# -- cache ----------------------------------------------------------------------------------------
def cache_dir() -> str:
    """Root of the cache: ``$FSRE_MODELS_DIR`` (unset or empty: ~/.cache/fsre_depth/models), links resolved
    (a cache moved to another disk by a link is still the cache)."""
    return os.path.realpath(os.path.expanduser(os.environ.get(CACHE_ENV) or DEFAULT_CACHE))


def writable_cache() -> str:
    """The cache's root, made (with the project's marker) when absent, empty or holding only the downloads
    folder (where a zip is put by hand); UnwritableError (one line)
    when it is a file, a folder of someone else's files (never written into) or cannot be made."""
    root = cache_dir()
    try:
        if not os.path.lexists(root):
            os.makedirs(root)
            mark_owned(root)
        elif os.path.isdir(root) and set(os.listdir(root)) <= {DOWNLOADS}:  # empty, or a zip put by hand
            mark_owned(root)
        check_replaceable(root)  # a file, or a folder without the marker holding files: not the cache
        if not owned(root):
            raise OwnershipError(f"{root} is not a folder FSRE-Depth made")
        os.makedirs(os.path.join(root, DOWNLOADS), exist_ok=True)
    except OwnershipError as err:
        raise utils.UnwritableError(f"the model cache ({CACHE_ENV}): {err}") from None
    except OSError as err:
        raise utils.UnwritableError(
            f"the model cache ({CACHE_ENV}) {root} cannot be written: {err.strerror or err}; set {CACHE_ENV} "
            f"to a writable folder"
        ) from None
    return root


@contextlib.contextmanager
def fetch_lock(item: Entry) -> Iterator[None]:
    """Hold ``<cache>/downloads/<file>.lock`` (utils.locks.FileLock, an OS lock that dies with its
    holder), waiting for another process that fetches the same file, so that one downloads and the
    others then find it cached."""
    lock = FileLock(os.path.join(writable_cache(), DOWNLOADS), item.file + LOCK_SUFFIX)
    try:
        lock.acquire(wait=True)
    except OSError as err:
        raise utils.UnwritableError(f"cannot lock {lock.path}: {err.strerror or err}") from None
    try:
        yield
    finally:
        lock.release()


def download_path(item: Entry) -> str:
    """Where an entry's archive is (or is to be put by hand): <cache>/downloads/<file>."""
    return os.path.join(cache_dir(), DOWNLOADS, item.file)


def cached_model(name: str) -> str | None:
    """The cached folder of a released model when it is complete (its card and checksums written), else
    None."""
    from checkpoints.files import CHECKSUM_FILE
    from checkpoints.model_card import CARD_FILE

    folder = os.path.join(cache_dir(), name)
    whole = all(os.path.isfile(os.path.join(folder, f)) for f in (CARD_FILE, CHECKSUM_FILE, MODEL_MARK))
    return folder if whole and owned(folder) else None


def fetch_model(name: str) -> str:
    """The folder of a released model: from the cache (no request, nothing written: a read-only cache
    serves), else downloaded, verified and unpacked, once for all processes that ask at the same time."""
    item = entry(name)
    cached = cached_model(name)
    if cached is None:
        with fetch_lock(item):  # another process fetching it: wait, then find it cached
            cached = cached_model(name)
            if cached is None:
                return _download_model(item)
    logger.info("%s: cached in %s", name, cached)
    return cached


def _download_model(item: Entry) -> str:
    """Download, verify and unpack a model into the cache (under its lock)."""
    folder = os.path.join(cache_dir(), item.name)
    try:  # before any download: an unmarked folder in the way is someone else's, left as it is
        check_replaceable(folder)
    except OwnershipError as err:
        raise utils.UnwritableError(f"{err} (it is in the way of the cached model {item.name})") from None
    unpack_obtained(item, lambda archive: unpack_model(item, archive, folder))
    logger.info("%s: unpacked into %s", item.name, folder)
    return folder


def fetch_data(name: str, destination: str) -> str:
    """Unpack a released data archive (e.g. the authors' pseudo-labels) into ``destination``, a new or
    empty folder (nothing already there is replaced)."""
    item = entry(name, "data")
    check_new_folder(destination)
    with fetch_lock(item):
        check_new_folder(destination)  # again: another process may have filled it while this one waited
        unpack_obtained(item, lambda archive: unpack_data(archive, destination))
    return destination


def check_new_folder(folder: str) -> None:
    """UnwritableError unless ``folder`` is absent or an empty folder (data already there is never
    replaced, not even the project's)."""
    if os.path.lexists(folder) and not (os.path.isdir(folder) and not os.listdir(folder)):
        raise utils.UnwritableError(f"{folder} exists already: remove it or give another folder")


def unpack_obtained(item: Entry, unpack: Callable[[str], None]) -> None:
    """Obtain an entry's verified archive and ``unpack`` it; a downloaded archive is removed after (the
    card keeps its checksums) or when it is refused, and kept when unpacking failed otherwise (a full
    disk: the next run needs no new download)."""
    archive, downloaded = obtain(item)
    try:
        unpack(archive)
    except DownloadError:
        if downloaded:
            os.remove(archive)
        raise
    if downloaded:
        os.remove(archive)


# -- download -----------------------------------------------------------------------------------
def sources(item: Entry) -> list[str]:
    """Where an entry's archive is tried, in order: the mirror (a URL or a folder), then the publisher's
    URLs."""
    mirror = os.environ.get(MIRROR_ENV)
    found = []
    if mirror:
        url = urllib.parse.urlparse(mirror)
        if url.scheme in URL_SCHEMES and (url.netloc or url.scheme == "file"):
            found.append(mirror.rstrip("/") + "/" + urllib.parse.quote(item.file))
        elif os.path.isdir(os.path.expanduser(mirror)):
            found.append(os.path.join(os.path.expanduser(mirror), item.file))
        else:
            raise utils.InputError(
                f"{MIRROR_ENV}={mirror!r} is neither an http(s) URL nor an existing folder: fix or unset it"
            )
    return found + list(item.info.get("urls", []))


def obtain(item: Entry) -> tuple[str, bool]:
    """(path of the verified archive, whether this call downloaded it): one put in place by hand, else the
    first source that delivers a file that passes ``verify``; DownloadError (one line) when none does."""
    path = download_path(item)
    if os.path.isfile(path):
        verify(item, path, downloaded=False)
        return path, False
    failures = []
    for source in sources(item):
        try:
            if os.path.isabs(source) or not urllib.parse.urlparse(source).scheme:
                if not os.path.isfile(source):
                    raise FileNotFoundError(f"not in the mirror folder {os.path.dirname(source)}")
                logger.info("%s: copying %s", item.name, source)
                with atomic_write(path + PARTIAL_SUFFIX) as tmp:
                    shutil.copyfile(source, tmp)
            else:
                logger.info("%s: downloading %s", item.name, source)
                download(source, path + PARTIAL_SUFFIX, item.info.get("size"))
        except (OSError, http.client.HTTPException, DownloadError) as err:
            reason = getattr(err, "reason", None) or err
            failures.append((source, str(reason)))
            logger.warning("%s: %s failed (%s)", item.name, source, reason)
            continue
        try:
            verify(item, path + PARTIAL_SUFFIX, downloaded=True)
        except DownloadError:
            os.remove(path + PARTIAL_SUFFIX)
            raise
        os.replace(path + PARTIAL_SUFFIX, path)
        return path, True
    tried = "; ".join(f"{url} ({why})" for url, why in failures) or "no URL in the registry"
    page = item.info.get("page") or (item.info.get("urls") or ["?"])[-1]
    raise DownloadError(
        f"cannot download {item.name}: {tried}. Download {page} by hand and put it at {path} "
        f"(or set {MIRROR_ENV} to a folder or URL holding {item.file})"
    )


def download(url: str, partial: str, size: int | None = None) -> None:
    """Fetch ``url`` into ``partial`` with a progress bar, resuming what an earlier cut download left there
    (HTTP Range); DownloadError for a web page where a file was expected."""
    have = os.path.getsize(partial) if os.path.isfile(partial) else 0
    if size is not None and have >= size:
        return  # complete: verify() judges it
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == HTTP_RANGE_NOT_SATISFIABLE and have:
            return  # the partial file is whole already
        raise
    with response:
        resumed = have and response.status == HTTP_PARTIAL
        if have and not resumed:
            logger.info("%s does not resume downloads: starting over", urllib.parse.urlparse(url).netloc)
            have = 0
        elif resumed:
            logger.info("resuming at %.1f MB", have / 1e6)
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else size
        content_type = response.headers.get("Content-Type", "")
        with (
            open(partial, "ab" if resumed else "wb") as f,
            tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=os.path.basename(url)) as bar,
        ):
            first = True
            for chunk in iter(lambda: response.read(READ_CHUNK), b""):
                if (
                    first
                    and not resumed
                    and "html" in content_type
                    and chunk.lstrip()[:9].lower().startswith(HTML_START)
                ):
                    raise DownloadError(f"{url} answered with a web page, not the file")
                first = False
                f.write(chunk)
                bar.update(len(chunk))
    if total is not None and os.path.getsize(partial) < total:
        raise DownloadError(f"{url}: the connection ended at {os.path.getsize(partial)} of {total} bytes")


def file_hashes(path: str) -> dict:
    """md5 and sha256 (hex) of a file, and its size, in one read (archives of gigabytes: files.file_digest
    would read it once per hash)."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(READ_CHUNK), b""):
            md5.update(chunk)
            sha.update(chunk)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest(), "size": os.path.getsize(path)}


def trusted_path() -> str:
    """The trust-on-first-use record: entry name -> the sha256 of its first download."""
    return os.path.join(cache_dir(), TRUSTED_FILE)


def read_trusted() -> dict:
    """The first downloads' sha256 by entry name ({} before any)."""
    try:
        with open(trusted_path(), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError as err:
        raise utils.InputError(f"{trusted_path()}: not readable JSON ({err})") from None


def verify(item: Entry, path: str, downloaded: bool) -> dict:
    """Check an archive against the registry (size, md5, sha256) or, without a published checksum, against
    the sha256 of its first download (recorded now when there is none); DownloadError on a mismatch."""
    got = file_hashes(path)
    expected = {k: item.info.get(k) for k in ("size", "md5", "sha256") if item.info.get(k) is not None}
    trust = None
    if "md5" not in expected and "sha256" not in expected:
        trust = read_trusted().get(item.name)
        if trust is not None:
            expected["sha256"] = trust
    wrong = [f"{k} {got[k]}, expected {v}" for k, v in expected.items() if got[k] != v]
    if wrong:
        origin = "downloaded" if downloaded else "put in place"
        raise DownloadError(
            f"{path} ({origin}) is not {item.name}: {'; '.join(wrong)}"
            + (" (removed)" if downloaded else " (left as it is: delete or replace it)")
        )
    if "md5" not in expected and "sha256" not in expected:
        record = {**read_trusted(), item.name: got["sha256"]}
        save_json(record, trusted_path())
        logger.warning(
            "%s: its publisher gives no checksum; recorded sha256 %s of this first download in %s "
            "(trust on first use: later downloads must match it)",
            item.name,
            got["sha256"],
            trusted_path(),
        )
    return got


# -- unpacking ----------------------------------------------------------------------------------
def safe_members(archive: str, suffixes: tuple, limits: tuple[int, int]) -> Iterator[zipfile.ZipInfo]:
    """The members of an untrusted zip to unpack (plain files with the given suffixes), after refusing one
    that would escape the folder (zip-slip), a link, or more than the limits (zip bombs)."""
    max_bytes, max_files = limits
    try:
        with zipfile.ZipFile(archive) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        raise DownloadError(f"{archive}: not a readable zip ({err})") from None
    kept, total = [], 0
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
            raise DownloadError(f"{archive}: member {name!r} would be written outside the folder (refused)")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DownloadError(f"{archive}: member {name!r} is a link (refused)")
        if info.is_dir() or not name.lower().endswith(suffixes) or "__MACOSX" in parts:
            continue
        if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
            raise DownloadError(f"{archive}: member {name!r} expands {MAX_RATIO}-fold or more (refused)")
        total += info.file_size
        kept.append(info)
    if total > max_bytes or len(kept) > max_files:
        raise DownloadError(
            f"{archive}: {len(kept)} files of {total} bytes unpacked, beyond the limits "
            f"({max_files} files, {max_bytes} bytes): refused"
        )
    return iter(kept)


def extract(archive: str, info: zipfile.ZipInfo, target: str) -> None:
    """Write one member to ``target``, stopping at its declared size (a header may lie)."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with zipfile.ZipFile(archive) as z, z.open(info) as src, open(target, "wb") as dst:
        written = 0
        for chunk in iter(lambda: src.read(READ_CHUNK), b""):
            written += len(chunk)
            if written > info.file_size:
                raise DownloadError(f"{archive}: member {info.filename!r} is longer than it says (refused)")
            dst.write(chunk)


def unpack_model(item: Entry, archive: str, folder: str) -> None:
    """Unpack a model zip (its files at the top or in one folder) into ``folder`` atomically, check that
    its networks load, and write its card and checksums."""
    from checkpoints import model_card, model_folder
    from checkpoints.files import CheckpointError, write_checksums

    members = list(safe_members(archive, MODEL_SUFFIXES, MODEL_LIMITS))
    roots = {os.path.dirname(m.filename) for m in members if os.path.basename(m.filename) == MODEL_MARK}
    if len(roots) != 1:
        raise DownloadError(f"{archive}: expected one {MODEL_MARK}, found {len(roots)} (not a model zip)")
    root = roots.pop()
    with atomic_folder(folder) as tmp:
        for info in members:
            if os.path.dirname(info.filename) == root:
                extract(archive, info, os.path.join(tmp, os.path.basename(info.filename)))
        try:
            spec = model_folder.inspect_model_folder(tmp)
            model_folder.load_depth_model(tmp)  # every key fits: the folder is usable
        except (CheckpointError, utils.InputError) as err:
            raise DownloadError(f"{archive} ({item.name}) does not hold a loadable model: {err}") from None
        layout = item.info.get("layout")
        if layout and spec.layout != layout:
            raise DownloadError(f"{archive}: a {spec.layout} folder, the registry says {layout}")
        card = model_card.released_card(item.name, item.info, file_hashes(archive), spec, tmp)
        model_card.write_card(card, tmp)
        write_checksums(tmp)


def unpack_data(archive: str, destination: str) -> None:
    """Unpack a pseudo-label zip (``segmentation/...`` or its content) into ``destination`` atomically."""
    members = list(safe_members(archive, DATA_SUFFIXES, DATA_LIMITS))
    if not members:
        raise DownloadError(f"{archive}: no {', '.join(DATA_SUFFIXES)} files in it")
    tops = {m.filename.split("/")[0] for m in members}
    base = os.path.basename(destination.rstrip(os.sep))
    strip = len(tops) == 1 and tops.pop() in (base, DATA_TOP) and all("/" in m.filename for m in members)
    with atomic_folder(destination) as tmp:
        for info in tqdm(members, desc="unpacking", unit="file"):
            parts = info.filename.split("/")[1 if strip else 0 :]
            extract(archive, info, os.path.join(tmp, *parts))
