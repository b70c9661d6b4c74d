"""Released models by name (--model, checkpoints/released.py), the hub entry point (hubconf.py), model cards
(checkpoints/model_card.py) and the authors' pseudo-labels, against a local HTTP server on 127.0.0.1 that
serves small zips in the authors' and Monodepth2's layouts made here from random-weight folders."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import zipfile

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from foreign_folders import write_authors_folder, write_monodepth2_folder
from PIL import Image

import options
import predict
import utils
from checkpoints import model_card, model_folder, released
from conftest import PROJECT_DIR
from datasets.mono_dataset import RESIZE_FILTER
from utils import files as fileio_atomic

HEIGHT, WIDTH = 64, 192
CUT_AT = 1 << 20  # bytes a cut download delivers before the connection drops
AUTHORS, MONODEPTH2 = "test_authors", "test_monodepth2"
GATE_TIMEOUT_S = 120  # the most a held response waits for its test (a bound against a hang, not a timing)


# -- a local server ------------------------------------------------------------------------------
class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` by name, with Range requests (unless ``server.ranges`` is False), and drops
    the connection after ``server.cut[name]`` bytes once; ``server.hold[name]`` bytes are sent, then
    ``server.sent`` is set and the rest waits for ``server.gate`` (once)."""

    def do_GET(self) -> None:
        srv = self.server
        name = urllib.parse.unquote(self.path.lstrip("/").split("?")[0])
        srv.requests.append((name, self.headers.get("Range")))
        data = srv.files.get(name)
        if data is None:
            self.send_error(404)
            return
        start, rng = 0, self.headers.get("Range")
        if rng and srv.ranges:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/zip")
        self.end_headers()
        cut, hold = srv.cut.pop(name, None), srv.hold.pop(name, None)
        if hold is not None:
            self.wfile.write(body[:hold])
            self.wfile.flush()
            srv.sent.set()
            srv.gate.wait(GATE_TIMEOUT_S)
            body = body[hold:]
        try:
            self.wfile.write(body if cut is None else body[:cut])
        except (BrokenPipeError, ConnectionResetError):  # the client was killed
            pass
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    """Start a server on 127.0.0.1 (a free port) in a thread; stop it after the test."""
    started = []

    def start(files: dict) -> http.server.ThreadingHTTPServer:
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        srv.files, srv.requests, srv.cut, srv.ranges = dict(files), [], {}, True
        srv.hold, srv.sent, srv.gate = {}, threading.Event(), threading.Event()
        srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.gate.set()
        srv.shutdown()
        srv.server_close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused: as offline)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- zips in both publishers' layouts -------------------------------------------------------------
def zip_folder(folder: str, prefix: str = "") -> bytes:
    """A zip of a folder's files, at its top (Monodepth2's zips) or below ``prefix``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        for name in sorted(os.listdir(folder)):
            z.write(os.path.join(folder, name), prefix + name)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Random-weight folders in both layouts, and their zips (the authors' inside a folder)."""
    root = tmp_path_factory.mktemp("published")
    authors, md2 = str(root / "authors"), str(root / "md2")
    write_authors_folder(authors, HEIGHT, WIDTH, with_pose=False)
    write_monodepth2_folder(md2, HEIGHT, WIDTH)
    for name in ("pose.pth", "pose_encoder.pth"):  # smaller zips; the depth model is what is tested
        os.remove(os.path.join(md2, name))
    image = str(root / "frame.png")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (90, 300, 3), dtype=np.uint8)).save(image)
    return {
        "folders": {AUTHORS: authors, MONODEPTH2: md2},
        "zips": {
            f"{AUTHORS}.zip": zip_folder(authors, "FSRE-Depth/"),
            f"{MONODEPTH2}.zip": zip_folder(md2),
        },
        "image": image,
    }


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def registry(tmp_path, monkeypatch, published):
    """A cache in tmp_path, and a registry file naming both test models at a given base URL."""
    monkeypatch.setenv(released.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(released.MIRROR_ENV, raising=False)

    def write(base_url: str, **overrides) -> dict:
        entries = {}
        for name, layout in ((AUTHORS, "fsre"), (MONODEPTH2, "monodepth2")):
            data = published["zips"][f"{name}.zip"]
            entries[name] = {
                "urls": [f"{base_url}/{name}.zip"],
                "file": f"{name}.zip",
                "md5": md5(data),
                "sha256": None,
                "size": len(data),
                "layout": layout,
                "encoder": "resnet18",
                "height": HEIGHT,
                "width": WIDTH,
                "licence": "test",
                **overrides.get(name, {}),
            }
        path = tmp_path / "registry.json"
        path.write_text(json.dumps({"models": entries}))
        monkeypatch.setenv(released.REGISTRY_ENV, str(path))
        return entries

    return write


def run(main, argv, capsys) -> tuple[int, str]:
    """Run a command through run_cli: (exit code, its one ``error:`` line of stderr, besides the log)."""
    code = utils.run_cli(main, argv)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    return code, errors[0]


def cache_root(tmp_path) -> str:
    return str(tmp_path / "cache")


def downloads_left(tmp_path) -> list[str]:
    """What the downloads folder of the cache holds besides the fetches' lock files."""
    folder = os.path.join(cache_root(tmp_path), released.DOWNLOADS)
    return [n for n in os.listdir(folder) if not n.endswith(released.LOCK_SUFFIX)]


# -- tests -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [AUTHORS, MONODEPTH2])
def test_named_model_downloads_verifies_caches_and_predicts(name, tmp_path, server, registry, published):
    srv = server(published["zips"])
    registry(srv.url)
    out_named, out_folder = str(tmp_path / "named"), str(tmp_path / "folder")
    assert predict.main(["--model", name, "--image_path", published["image"], "--output_dir", out_named]) == 0
    assert [n for n, _ in srv.requests] == [f"{name}.zip"]
    folder = os.path.join(cache_root(tmp_path), name)
    card = model_card.read_card(folder)
    assert card["released"]["archive"]["md5"] == md5(published["zips"][f"{name}.zip"])
    for file, digest in card["files"].items():  # the card lists each unpacked file's sha256
        assert hashlib.sha256(open(os.path.join(folder, file), "rb").read()).hexdigest() == digest
    assert set(card["files"]) == set(os.listdir(published["folders"][name]))
    assert not downloads_left(tmp_path)  # the zip is not kept
    # cached: a second run makes no request
    assert predict.main(["--model", name, "--image_path", published["image"], "--output_dir", out_named]) == 0
    assert len(srv.requests) == 1
    # the same depth as the publisher's folder loaded directly
    src = published["folders"][name]
    assert (
        predict.main(
            ["--load_weights_folder", src, "--image_path", published["image"], "--output_dir", out_folder]
        )
        == 0
    )
    np.testing.assert_array_equal(
        np.load(os.path.join(out_named, "frame_depth.npy")),
        np.load(os.path.join(out_folder, "frame_depth.npy")),
    )


def test_wrong_checksum_is_refused_and_nothing_kept(tmp_path, server, registry, published, capsys):
    srv = server(published["zips"])
    registry(srv.url, **{MONODEPTH2: {"md5": "0" * 32}})
    code, err = run(predict.main, ["--model", MONODEPTH2, "--image_path", published["image"]], capsys)
    assert code == utils.EXIT_ERROR
    assert "is not test_monodepth2" in err and "md5" in err and "(removed)" in err
    root = cache_root(tmp_path)
    assert not os.path.exists(os.path.join(root, MONODEPTH2))
    assert downloads_left(tmp_path) == []


def test_wrong_size_is_refused(tmp_path, server, registry, published):
    srv = server(published["zips"])
    registry(srv.url, **{AUTHORS: {"size": 123}})
    with pytest.raises(released.DownloadError, match="size"):
        released.fetch_model(AUTHORS)
    assert downloads_left(tmp_path) == []


def test_cut_download_resumes(tmp_path, server, registry, published):
    srv = server(published["zips"])
    registry(srv.url)
    srv.cut[f"{MONODEPTH2}.zip"] = CUT_AT
    with pytest.raises(released.DownloadError, match="cannot download"):
        released.fetch_model(MONODEPTH2)
    partial = os.path.join(
        cache_root(tmp_path), released.DOWNLOADS, f"{MONODEPTH2}.zip{released.PARTIAL_SUFFIX}"
    )
    assert os.path.getsize(partial) == CUT_AT
    folder = released.fetch_model(MONODEPTH2)
    assert srv.requests[-1] == (f"{MONODEPTH2}.zip", f"bytes={CUT_AT}-")  # only the rest was asked for
    model_folder.load_depth_model(folder)
    assert not os.path.exists(partial)


def test_server_without_ranges_starts_over(tmp_path, server, registry, published):
    srv = server(published["zips"])
    registry(srv.url)
    srv.ranges = False
    srv.cut[f"{AUTHORS}.zip"] = CUT_AT
    with pytest.raises(released.DownloadError):
        released.fetch_model(AUTHORS)
    folder = released.fetch_model(AUTHORS)  # a 200 answer to the Range request: the file is rewritten whole
    assert model_card.read_card(folder)["released"]["archive"]["md5"] == md5(
        published["zips"][f"{AUTHORS}.zip"]
    )


def test_offline_gives_one_line_naming_url_and_place(tmp_path, registry, published, capsys):
    url = closed_port_url()
    registry(url)
    code, err = run(predict.main, ["--model", AUTHORS, "--image_path", published["image"]], capsys)
    assert code == utils.EXIT_ERROR
    lines = [err]
    place = os.path.join(cache_root(tmp_path), released.DOWNLOADS, f"{AUTHORS}.zip")
    assert f"{url}/{AUTHORS}.zip" in lines[0] and f"put it at {place}" in lines[0]
    # put there by hand, it is used without a request
    with open(place, "wb") as f:
        f.write(published["zips"][f"{AUTHORS}.zip"])
    assert model_folder.inspect_model_folder(released.fetch_model(AUTHORS)).layout == "fsre"
    assert os.path.isfile(place)  # a file put in place by hand is the user's: left there


def test_file_put_by_hand_that_fails_is_left_alone(tmp_path, registry, published):
    registry(closed_port_url())
    place = os.path.join(cache_root(tmp_path), released.DOWNLOADS, f"{AUTHORS}.zip")
    os.makedirs(os.path.dirname(place))
    open(place, "wb").write(b"not the model")
    with pytest.raises(released.DownloadError, match="left as it is"):
        released.fetch_model(AUTHORS)
    assert open(place, "rb").read() == b"not the model"


def test_a_folder_in_the_caches_way_is_left_alone(tmp_path, server, registry, published):
    srv = server(published["zips"])
    registry(srv.url)
    mine = os.path.join(released.writable_cache(), AUTHORS)  # in the cache the project made
    os.makedirs(mine)
    open(os.path.join(mine, "notes.txt"), "w").write("mine")
    with pytest.raises(utils.UnwritableError, match="in the way"):
        released.fetch_model(AUTHORS)
    assert os.listdir(mine) == ["notes.txt"] and srv.requests == []


def test_mirror_url_is_tried_first(tmp_path, server, registry, published, monkeypatch):
    publisher, mirror = server(published["zips"]), server(published["zips"])
    registry(publisher.url)
    monkeypatch.setenv(released.MIRROR_ENV, mirror.url + "/models/")
    mirror.files = {f"models/{k}": v for k, v in published["zips"].items()}
    released.fetch_model(MONODEPTH2)
    assert mirror.requests == [(f"models/{MONODEPTH2}.zip", None)] and publisher.requests == []
    # a mirror without the file: the publisher's URL next
    mirror.files = {}
    released.fetch_model(AUTHORS)
    assert mirror.requests[-1][0] == f"models/{AUTHORS}.zip" and publisher.requests == [
        (f"{AUTHORS}.zip", None)
    ]


def test_mirror_folder_makes_no_request(tmp_path, server, registry, published, monkeypatch):
    publisher = server(published["zips"])
    registry(publisher.url)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / f"{AUTHORS}.zip").write_bytes(published["zips"][f"{AUTHORS}.zip"])
    monkeypatch.setenv(released.MIRROR_ENV, str(mirror))
    folder = released.fetch_model(AUTHORS)
    assert publisher.requests == [] and model_card.read_card(folder)["released"]["name"] == AUTHORS
    assert (mirror / f"{AUTHORS}.zip").exists()  # the mirror's copy is left in place


def test_hub_entry_point_gives_predicts_depth(tmp_path, published):
    folder = published["folders"][AUTHORS]
    out = str(tmp_path / "out")
    assert (
        predict.main(
            ["--load_weights_folder", folder, "--image_path", published["image"], "--output_dir", out]
        )
        == 0
    )
    model = torch.hub.load(PROJECT_DIR, "fsre_depth", source="local", folder=folder, trust_repo=True)
    rgb = Image.open(published["image"]).convert("RGB").resize((model.width, model.height), RESIZE_FILTER)
    images = TF.to_tensor(rgb)[None]  # as predict.py feeds its models
    with torch.no_grad():
        disp, depth = model(images)
    expected = np.load(os.path.join(out, "frame_depth.npy"))
    np.testing.assert_allclose(depth[0, 0].numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(1.0 / disp[0, 0].numpy(), expected, rtol=1e-5)


def test_hub_entry_point_fetches_a_named_model(tmp_path, server, registry, published):
    srv = server(published["zips"])
    registry(srv.url)
    model = torch.hub.load(PROJECT_DIR, "fsre_depth", source="local", pretrained=MONODEPTH2, trust_repo=True)
    assert (model.height, model.width) == (HEIGHT, WIDTH) and model.card["released"]["name"] == MONODEPTH2
    assert model.output_names == ["disp", "depth"]


# -- untrusted zips --------------------------------------------------------------------------------
def members_zip(members: dict, compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "members, reason",
    [
        ({"../outside.pth": b"x", "encoder.pth": b"x"}, "outside the folder"),
        ({"/abs/encoder.pth": b"x"}, "outside the folder"),
        ({"encoder.pth": bytes(8 << 20)}, "expands"),  # 8 MB of zeros deflate about 1000-fold: a bomb
        ({"readme.txt": b"hello"}, "expected one encoder.pth"),
    ],
)
def test_unsafe_zips_are_refused(members, reason, tmp_path, server, registry, published):
    data = members_zip(members, zipfile.ZIP_DEFLATED)
    srv = server({f"{AUTHORS}.zip": data})
    registry(srv.url, **{AUTHORS: {"md5": md5(data), "size": len(data)}})
    with pytest.raises(released.DownloadError, match=reason):
        released.fetch_model(AUTHORS)
    root = cache_root(tmp_path)
    assert not os.path.exists(os.path.join(root, AUTHORS)) and not os.path.exists(tmp_path / "outside.pth")
    assert downloads_left(tmp_path) == []


def test_a_pickle_that_runs_code_is_refused(tmp_path, server, registry):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    buffer = io.BytesIO()
    torch.save({"evil": Payload()}, buffer)
    data = members_zip({"encoder.pth": buffer.getvalue(), "decoder.pth": buffer.getvalue()})
    srv = server({f"{AUTHORS}.zip": data})
    registry(srv.url, **{AUTHORS: {"md5": md5(data), "size": len(data)}})
    with pytest.raises(released.DownloadError, match="loadable model"):
        released.fetch_model(AUTHORS)
    assert not (tmp_path / "ran").exists() and not os.path.exists(os.path.join(cache_root(tmp_path), AUTHORS))


def test_trust_on_first_use_without_published_checksum(tmp_path, server, registry, published):
    data = published["zips"][f"{MONODEPTH2}.zip"]
    srv = server(published["zips"])
    registry(srv.url, **{MONODEPTH2: {"md5": None, "size": None}})
    folder = released.fetch_model(MONODEPTH2)
    trusted = json.load(open(os.path.join(cache_root(tmp_path), released.TRUSTED_FILE)))
    assert trusted == {MONODEPTH2: hashlib.sha256(data).hexdigest()}
    shutil.rmtree(folder)
    srv.files[f"{MONODEPTH2}.zip"] = data[:-1] + bytes([data[-1] ^ 1])  # the host now serves other bytes
    with pytest.raises(released.DownloadError, match="sha256"):
        released.fetch_model(MONODEPTH2)


def test_list_models_prints_the_registry(capsys):
    with pytest.raises(SystemExit) as exit_:
        predict.build_parser().parse_args(["--list_models"])
    assert exit_.value.code == 0
    table = capsys.readouterr().out
    names = json.load(open(released.REGISTRY_FILE))["models"]
    assert len(names) == 10 and all(name in table for name in names)
    assert "0.105" in table and "0.115" in table


def test_registry_facts():
    """The published md5 of Monodepth2's nine zips (its utils.py) and the authors' entry."""
    models = json.load(open(released.REGISTRY_FILE))["models"]
    md2 = {k: v for k, v in models.items() if v["layout"] == "monodepth2"}
    assert len(md2) == 9 and all(len(v["md5"]) == 32 and v["urls"][0].endswith(".zip") for v in md2.values())
    assert md2["mono+stereo_640x192"]["urls"][0].endswith("/mono%2Bstereo_640x192.zip")
    assert (
        models["fsre_resnet18_192x640"]["md5"] is None
        and models["fsre_resnet18_192x640"]["metrics"]["abs_rel"] == 0.105
    )


# -- model cards -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A folder written by this project (the baseline at 64x192)."""
    from model import FSREModel

    root = tmp_path_factory.mktemp("trained")
    opts = options.parse_args(
        ["--weights_init", "scratch", "--config", "baseline", "--height", str(HEIGHT), "--width", str(WIDTH)]
    )
    folder = model_folder.save_model_folder(
        str(root / "weights_3"), FSREModel(opts).networks(), opts, epoch=3, step=42
    )
    return folder


def test_every_written_folder_has_a_card(trained, capsys):
    card = model_card.read_card(trained)
    assert card["architecture"]["encoder"] == "resnet18" and card["architecture"]["semantics"] is False
    assert (card["height"], card["width"]) == (HEIGHT, WIDTH)
    assert card["training"] == {"epoch": 3, "step": 42, "num_epochs": options.parse_args([]).num_epochs}
    assert card["data"]["split"] == "eigen_zhou" and len(card["data"]["train_files_sha256"]) == 64
    listed = dict(line.split()[::-1] for line in open(os.path.join(trained, "checksums.sha256")))
    assert {k: listed[k] for k in card["files"]} == card["files"] and model_card.CARD_FILE in listed
    from tools import model_card as tool

    assert tool.main([trained]) == 0
    printed = capsys.readouterr().out
    assert "encoder: resnet18" in printed and "step: 42" in printed


def test_the_card_shows_the_metrics_of_an_evaluation(trained, tmp_path, capsys):
    from tools import model_card as tool

    folder = str(tmp_path / "evaluated")
    shutil.copytree(trained, folder)
    metrics = {"abs_rel": 0.5, "a1": 0.25}
    with open(os.path.join(folder, "metrics_eigen.json"), "w") as f:
        json.dump(metrics, f)
    assert tool.main([folder, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["evaluations"] == {"metrics_eigen.json": metrics}


def test_card_contradicting_options_is_refused(trained, tmp_path, capsys):
    import train

    argv = ["--weights_init", "scratch", "--height", str(HEIGHT), "--width", str(WIDTH)]
    argv += ["--load_weights_folder", trained, "--log_dir", str(tmp_path / "runs")]

    def parse(extra: list) -> None:
        released.resolve_training_weights(options.parse_args(argv + extra))  # as train.py, before any work

    code, err = run(train.main, argv + ["--config", "full"], capsys)  # segmentation decoder and CMA
    assert code == utils.EXIT_ERROR and "model_card.json contradicts the options" in err
    assert "semantics false in the card, true in the options" in err and not (tmp_path / "runs").exists()
    with pytest.raises(utils.InputError, match='encoder "resnet18" in the card, "resnet50" in the options'):
        parse(["--config", "baseline", "--encoder", "resnet50"])
    # the networks that agree may be loaded alone; the card's own options load
    parse(["--config", "full", "--models_to_load", "encoder", "pose_encoder", "pose"])
    parse(["--config", "baseline"])
    with pytest.raises(SystemExit):  # --model and --load_weights_folder exclude each other
        options.parse_args(argv + ["--model", "mono_640x192"])


def test_package_writes_a_hostable_zip_and_its_registry_line(
    trained, tmp_path, server, registry, capsys, monkeypatch
):
    from tools import model_card as tool

    out = str(tmp_path / "lab_model.zip")
    assert tool.main([trained, "--package", out, "--url", "http://example.org/m"]) == 0
    line = json.loads("{" + capsys.readouterr().out + "}")
    data = open(out, "rb").read()
    entry = line["lab_model"]
    assert (
        entry["md5"] == md5(data)
        and entry["size"] == len(data)
        and entry["urls"] == ["http://example.org/m/lab_model.zip"]
    )
    assert "adam.pth" not in zipfile.ZipFile(out).namelist()
    # hosted, the line names it: fetched by name, with the card it was trained with
    srv = server({"lab_model.zip": data})
    entry["urls"] = [f"{srv.url}/lab_model.zip"]
    path = tmp_path / "lab.json"
    path.write_text(json.dumps({"models": line}))
    monkeypatch.setenv(released.REGISTRY_ENV, str(path))
    folder = released.fetch_model("lab_model")
    card = model_card.read_card(folder)
    assert card["training"]["step"] == 42 and card["released"]["archive"]["sha256"] == entry["sha256"]


def test_export_copies_the_card(trained, tmp_path):
    from tools import export_model

    path = str(tmp_path / "model.pt")
    assert (
        export_model.main(
            ["--load_weights_folder", trained, "--format", "torchscript", "--output", path, "--no_check"]
        )
        == 0
    )
    card = json.load(open(path + ".card.json"))
    assert card["architecture"] == model_card.read_card(trained)["architecture"]
    assert card["exported"]["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()


# -- the authors' pseudo-labels ----------------------------------------------------------------------
def test_authors_pseudo_labels_are_fetched(tmp_path, server, monkeypatch):
    from tools import make_pseudo_labels

    label = io.BytesIO()
    Image.fromarray(np.full((4, 6), 7, dtype=np.uint8)).save(label, format="PNG")
    inner = "2011_09_26/2011_09_26_drive_0001_sync/image_02/0000000000.png"
    data = members_zip({f"segmentation/{inner}": label.getvalue(), "segmentation/notes.exe": b"x"})
    srv = server({"segmentation.zip": data})
    path = tmp_path / "registry.json"
    entry = {
        "urls": [f"{srv.url}/segmentation.zip"],
        "file": "segmentation.zip",
        "md5": md5(data),
        "size": len(data),
    }
    path.write_text(json.dumps({"models": {}, "data": {make_pseudo_labels.AUTHORS_LABELS: entry}}))
    monkeypatch.setattr(released, "REGISTRY_FILE", str(path))  # the built-in entry, served here
    monkeypatch.delenv(released.REGISTRY_ENV, raising=False)
    monkeypatch.setenv(released.CACHE_ENV, str(tmp_path / "cache"))
    kitti = tmp_path / "kitti"
    assert make_pseudo_labels.main(["--data_path", str(kitti), "--authors_labels"]) == 0
    assert np.asarray(Image.open(kitti / "segmentation" / inner)).tolist() == np.full((4, 6), 7).tolist()
    # another label folder: the top folder "segmentation" is dropped there too (downloaded again: not kept)
    labels = tmp_path / "labels"
    assert make_pseudo_labels.main(["--seg_path", str(labels), "--authors_labels"]) == 0
    assert (labels / inner).is_file() and len(srv.requests) == 2
    assert not (kitti / "segmentation" / "notes.exe").exists()
    # an existing label folder is never replaced
    with pytest.raises(utils.UnwritableError, match="exists already"):
        make_pseudo_labels.main(["--data_path", str(kitti), "--authors_labels"])


# -- a hostile user ---------------------------------------------------------------------------------
FETCH_SCRIPT = (
    "import sys, utils; utils.setup_logging(); from checkpoints import released; "
    "print(released.fetch_model(sys.argv[1]))"
)


def start_fetch(name: str) -> subprocess.Popen:
    """Another process fetching ``name`` (the environment, hence the cache and registry, inherited)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": PROJECT_DIR}
    return subprocess.Popen(
        [sys.executable, "-c", FETCH_SCRIPT, name],
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_fetching_one_model_download_it_once(tmp_path, server, registry, published):
    srv = server(published["zips"])
    registry(srv.url)
    srv.hold[f"{MONODEPTH2}.zip"] = CUT_AT
    first = start_fetch(MONODEPTH2)
    assert srv.sent.wait(GATE_TIMEOUT_S)  # the first is downloading (it holds the lock)
    second = start_fetch(MONODEPTH2)
    seen = []
    for line in second.stderr:  # the second says it waits for the first: it is blocked on the lock
        seen.append(line)
        if "waiting for" in line:
            break
    assert "waiting for" in seen[-1] and f"{MONODEPTH2}.zip{released.LOCK_SUFFIX}" in seen[-1]
    srv.gate.set()
    out_first, err_first = first.communicate()
    out_second, err_second = second.communicate()
    assert first.returncode == 0 and second.returncode == 0, err_first + err_second
    folder = os.path.join(cache_root(tmp_path), MONODEPTH2)
    assert out_first.strip() == out_second.strip() == folder and "cached in" in err_second
    assert [n for n, _ in srv.requests] == [f"{MONODEPTH2}.zip"]  # one download for both
    model_folder.load_depth_model(folder)


def wait_until(condition, process: subprocess.Popen) -> None:
    """Wait for ``condition`` while ``process`` runs (a bound of GATE_TIMEOUT_S against a hang)."""
    deadline = time.monotonic() + GATE_TIMEOUT_S
    while not condition():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)


def test_a_download_killed_mid_write_is_resumed_by_the_next_run(tmp_path, server, registry, published):
    srv = server(published["zips"])
    registry(srv.url)
    srv.hold[f"{MONODEPTH2}.zip"] = CUT_AT
    partial = os.path.join(
        cache_root(tmp_path), released.DOWNLOADS, f"{MONODEPTH2}.zip{released.PARTIAL_SUFFIX}"
    )
    fetching = start_fetch(MONODEPTH2)
    wait_until(lambda: os.path.isfile(partial) and os.path.getsize(partial) >= CUT_AT, fetching)
    fetching.send_signal(signal.SIGKILL)  # mid-download, holding the lock: the kernel lets it go
    fetching.communicate()
    srv.gate.set()
    folder = released.fetch_model(MONODEPTH2)
    assert srv.requests[-1] == (f"{MONODEPTH2}.zip", f"bytes={CUT_AT}-")  # resumed where it was killed
    model_folder.load_depth_model(folder)
    assert downloads_left(tmp_path) == []


def a_file(tmp_path) -> str:
    (tmp_path / "a_file").write_text("mine")
    return str(tmp_path / "a_file")


def user_folder(tmp_path) -> str:
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "thesis.txt").write_text("mine")
    return str(folder)


@pytest.mark.parametrize(
    "place, reason",
    [
        (a_file, "is a file"),
        (user_folder, "did not write"),
        (lambda t: os.path.join(a_file(t), "cache"), "cannot be written"),
    ],
)
def test_a_cache_that_is_not_one_gives_one_line(
    place, reason, tmp_path, server, registry, published, capsys, monkeypatch
):
    srv = server(published["zips"])
    registry(srv.url)
    root = place(tmp_path)
    before = sorted(os.listdir(tmp_path)), sorted(os.listdir(root)) if os.path.isdir(root) else None
    monkeypatch.setenv(released.CACHE_ENV, root)
    code, err = run(predict.main, ["--model", AUTHORS, "--image_path", published["image"]], capsys)
    assert code == utils.EXIT_ERROR and released.CACHE_ENV in err and reason in err
    assert (sorted(os.listdir(tmp_path)), sorted(os.listdir(root)) if os.path.isdir(root) else None) == before
    assert srv.requests == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_cache_gives_one_line(tmp_path, registry, published, capsys, monkeypatch):
    registry(closed_port_url())
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    monkeypatch.setenv(released.CACHE_ENV, str(locked / "cache"))
    code, err = run(predict.main, ["--model", AUTHORS, "--image_path", published["image"]], capsys)
    assert code == utils.EXIT_ERROR and "cannot be written" in err and os.listdir(locked) == []


def test_an_empty_cache_variable_means_the_default(monkeypatch):
    monkeypatch.setenv(released.CACHE_ENV, "")
    assert released.cache_dir() == os.path.realpath(released.DEFAULT_CACHE)


def test_a_nonsense_mirror_gives_one_line(tmp_path, server, registry, published, capsys, monkeypatch):
    srv = server(published["zips"])
    registry(srv.url)
    monkeypatch.setenv(released.MIRROR_ENV, "not a url nor a folder")
    code, err = run(predict.main, ["--model", AUTHORS, "--image_path", published["image"]], capsys)
    assert code == utils.EXIT_ERROR and "FSRE_MODELS_MIRROR='not a url nor a folder'" in err
    assert "neither an http(s) URL nor an existing folder" in err and srv.requests == []


def test_a_mirror_folder_without_the_file_is_named_in_the_offline_line(
    tmp_path, registry, published, monkeypatch
):
    registry(closed_port_url())
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    monkeypatch.setenv(released.MIRROR_ENV, str(mirror))
    with pytest.raises(released.DownloadError, match=f"not in the mirror folder {mirror}"):
        released.fetch_model(AUTHORS)


def url_entry(**fields) -> dict:
    return {"urls": ["http://127.0.0.1:9/m.zip"], "encoder": "resnet18", "height": 64, "width": 192, **fields}


@pytest.mark.parametrize(
    "text, reason",
    [
        ('{"models": {"m": ', "not a readable registry"),
        ('["m"]', "not a registry"),
        (json.dumps({"models": {"m": 5}}), "not a JSON object of fields"),
        (json.dumps({"models": {"m": {"urls": ["http://127.0.0.1:9/m.zip"]}}}), "no encoder, height, width"),
        (json.dumps({"models": {"m": url_entry(file="../../x.zip")}}), 'file "../../x.zip" is not a plain'),
        (json.dumps({"models": {"../m": url_entry()}}), "a name is letters"),
        (json.dumps({"models": {"m": url_entry(urls=["ftp://host/m.zip"])}}), "urls must be a list of http"),
        (json.dumps({"models": {"m": url_entry(md5="abc")}}), 'md5 "abc" is not 32'),
        (json.dumps({"models": {"mono_640x192": url_entry()}}), "is a name of"),
    ],
)
def test_a_bad_registry_entry_gives_one_line(text, reason, tmp_path, published, capsys, monkeypatch):
    path = tmp_path / "lab.json"
    path.write_text(text)
    monkeypatch.setenv(released.REGISTRY_ENV, str(path))
    monkeypatch.setenv(released.CACHE_ENV, str(tmp_path / "cache"))
    name = "mono_640x192" if "mono_640x192" in text else "m"
    code, err = run(predict.main, ["--model", name, "--image_path", published["image"]], capsys)
    assert code == utils.EXIT_ERROR and err.startswith(f"error: {path}") and reason in err
    assert sorted(os.listdir(tmp_path)) == ["lab.json"]  # nothing fetched or written, in the cache or beside


def test_an_unknown_name_lists_close_names(capsys):
    code, err = run(predict.main, ["--model", "mono_640x19", "--image_path", "x.png"], capsys)
    assert code == utils.EXIT_ERROR and "did you mean mono_640x192 or" in err
    code, err = run(predict.main, ["--model", "fsre", "--image_path", "x.png"], capsys)
    assert "did you mean fsre_resnet18_192x640?" in err


def test_model_and_weights_folder_together_are_refused(tmp_path, capsys):
    import train

    for main in (predict.main, train.main):
        with pytest.raises(SystemExit) as exit_:
            main(["--model", "mono_640x192", "--load_weights_folder", str(tmp_path), "--image_path", "x.png"])
        assert exit_.value.code == utils.EXIT_ERROR
        assert "not allowed with argument --model" in capsys.readouterr().err
    opts = options.parse_args([])
    opts.model, opts.load_weights_folder = "mono_640x192", str(tmp_path)  # evaluate_depth's options
    with pytest.raises(utils.InputError, match="name two models"):
        released.resolve_model_option(opts)


def test_a_damaged_cached_model_is_caught_on_use(tmp_path, server, registry, published, capsys):
    srv = server(published["zips"])
    registry(srv.url)
    folder = released.fetch_model(MONODEPTH2)
    encoder = os.path.join(folder, "encoder.pth")
    data = bytearray(open(encoder, "rb").read())
    data[len(data) // 2] ^= 1  # one bit, late in the file: the checksum, not the unpickler, catches it
    open(encoder, "wb").write(data)
    code, err = run(predict.main, ["--model", MONODEPTH2, "--image_path", published["image"]], capsys)
    assert code == utils.EXIT_ERROR and f"{encoder} is damaged" in err and "checksums.sha256" in err
    assert len(srv.requests) == 1  # the cached folder was used (and checked), not fetched again


def labels_entry(tmp_path, srv, monkeypatch) -> None:
    """The authors' pseudo-labels' built-in entry, served by ``srv``."""
    from tools import make_pseudo_labels

    data = members_zip({"segmentation/a/0.png": b"\x89PNG not read"})
    srv.files["segmentation.zip"] = data
    entry = {"urls": [f"{srv.url}/segmentation.zip"], "file": "segmentation.zip", "md5": md5(data)}
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"models": {}, "data": {make_pseudo_labels.AUTHORS_LABELS: entry}}))
    monkeypatch.setattr(released, "REGISTRY_FILE", str(path))
    monkeypatch.delenv(released.REGISTRY_ENV, raising=False)
    monkeypatch.setenv(released.CACHE_ENV, str(tmp_path / "cache"))


def test_pseudo_labels_into_a_folder_that_exists(tmp_path, server, monkeypatch, capsys):
    from tools import make_pseudo_labels

    srv = server({})
    labels_entry(tmp_path, srv, monkeypatch)
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "mine.png").write_bytes(b"mine")
    code, err = run(make_pseudo_labels.main, ["--seg_path", str(labels), "--authors_labels"], capsys)
    assert code == utils.EXIT_ERROR and f"{labels} exists already" in err
    assert os.listdir(labels) == ["mine.png"] and srv.requests == []
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty folder made for them is filled
    assert make_pseudo_labels.main(["--seg_path", str(empty), "--authors_labels"]) == 0
    assert (empty / "a" / "0.png").is_file()


def test_list_models_everywhere_and_its_numbers_from_the_registry(tmp_path, capsys, monkeypatch):
    import evaluate_depth
    import train

    path = tmp_path / "lab.json"
    path.write_text(
        json.dumps({"models": {"lab": url_entry(height=77, width=333, metrics={"abs_rel": 0.321})}})
    )
    monkeypatch.setenv(released.REGISTRY_ENV, str(path))
    assert train.main(["--list_models"]) == 0
    table = capsys.readouterr().out
    assert "77x333" in table and "0.321" in table
    with pytest.raises(SystemExit) as exit_:
        evaluate_depth.main(["--list_models"])
    assert exit_.value.code == 0 and capsys.readouterr().out == table


def test_model_card_of_a_folder_without_a_card(trained, tmp_path, capsys):
    from tools import model_card as tool

    folder = str(tmp_path / "old_run")
    shutil.copytree(trained, folder)
    os.remove(os.path.join(folder, model_card.CARD_FILE))  # as an older version wrote it
    assert tool.main([folder]) == 0
    printed = capsys.readouterr().out
    assert f"no {model_card.CARD_FILE}" in printed and "config: baseline" in printed
    files = set(os.listdir(folder)) - {"checksums.sha256", fileio_atomic.OWNER_MARKER}
    assert f"checksums: {len(files)} files match checksums.sha256\n" in printed


def test_a_malformed_card_gives_one_line(trained, tmp_path, capsys):
    from tools import model_card as tool

    folder = str(tmp_path / "broken")
    shutil.copytree(trained, folder)
    open(os.path.join(folder, model_card.CARD_FILE), "w").write('{"architecture": ')
    code, err = run(tool.main, [folder], capsys)
    assert code == utils.EXIT_ERROR and "model_card.json: not a readable model card" in err


def test_a_cached_model_is_used_without_writing(tmp_path, server, registry, published, monkeypatch):
    srv = server(published["zips"])
    registry(srv.url)
    folder = released.fetch_model(AUTHORS)

    def no_writes() -> str:
        raise AssertionError("a cached model needs no write (a read-only shared cache serves it)")

    monkeypatch.setattr(released, "writable_cache", no_writes)
    assert released.fetch_model(AUTHORS) == folder and len(srv.requests) == 1


def test_pseudo_labels_filled_by_another_process_while_waiting_are_kept(tmp_path, server, monkeypatch):
    srv = server({})
    labels_entry(tmp_path, srv, monkeypatch)
    labels = tmp_path / "labels"
    real_lock = released.fetch_lock

    @contextlib.contextmanager
    def lock_taken_after_another(item):
        with real_lock(item):
            labels.mkdir()  # what the process that held the lock unpacked meanwhile (the project's)
            fileio_atomic.mark_owned(str(labels))
            (labels / "theirs.png").write_bytes(b"theirs")
            yield

    monkeypatch.setattr(released, "fetch_lock", lock_taken_after_another)
    with pytest.raises(utils.UnwritableError, match="exists already"):
        released.fetch_data("fsre_segmentation", str(labels))
    assert sorted(os.listdir(labels)) == [fileio_atomic.OWNER_MARKER, "theirs.png"] and srv.requests == []
