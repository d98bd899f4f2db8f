"""prepare_data against a local HTTP server serving small archives in the published layouts."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from miabench.data.aligned import AlignedDataset
from miabench.data.segmentation import CityscapesSegDataset
from miabench.data_sources import PrepareError, available, load_source, prepare
from miabench.prepare_data import main


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files with HTTP Range (``bytes=N-``), as real dataset hosts serve them."""

    requests: list[tuple[str, str | None]] = []

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        RangeHandler.requests.append((self.path, self.headers.get("Range")))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if (spec := self.headers.get("Range")) and spec.startswith("bytes="):
            start = int(spec[6:].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``(base URL, served folder)`` of a server on 127.0.0.1 and a free port."""
    served = tmp_path / "served"
    served.mkdir()
    RangeHandler.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    httpd.shutdown()
    httpd.server_close()


def _jpeg(rng: np.random.Generator, h: int, w: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def facades_tar(path: Path, n: int = 3) -> bytes:
    """A tar.gz in pix2pix's release layout: facades/{train,val,test}/<i>.jpg (A|B pairs)."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tf:
        for phase in ("train", "val", "test"):
            for i in range(1, n + 1):
                data = _jpeg(rng, 16, 32)
                info = tarfile.TarInfo(f"facades/{phase}/{i}.jpg")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path.read_bytes()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_download_unpacks_facades_into_the_reader_layout(
    server: tuple[str, Path], tmp_path: Path
) -> None:
    base, served = server
    (served / "pix2pix" / "datasets").mkdir(parents=True)
    facades_tar(served / "pix2pix" / "datasets" / "facades.tar.gz")
    data = tmp_path / "data"
    # --mirror keeps the registry's path: the real entry is exercised, host swapped
    assert main(["facades", "--data-dir", str(data), "--mirror", base]) == 0
    assert RangeHandler.requests == [("/pix2pix/datasets/facades.tar.gz", None)]
    assert len(AlignedDataset(data / "facades", "train")) == 3
    assert len(AlignedDataset(data / "facades", "test")) == 3
    # no checksum published: the first download's SHA-256 is recorded
    ledger = (data / "downloads" / "checksums.json").read_text()
    digest = hashlib.sha256((data / "downloads" / "facades.tar.gz").read_bytes()).hexdigest()
    assert digest in ledger
    # a second run finds it prepared and downloads nothing
    assert main(["facades", "--data-dir", str(data), "--mirror", base]) == 0
    assert len(RangeHandler.requests) == 1


def test_truncated_partial_download_is_resumed(server: tuple[str, Path], tmp_path: Path) -> None:
    base, served = server
    (served / "pix2pix" / "datasets").mkdir(parents=True)
    full = facades_tar(served / "pix2pix" / "datasets" / "facades.tar.gz")
    downloads = tmp_path / "data" / "downloads"
    downloads.mkdir(parents=True)
    half = len(full) // 2
    (downloads / "facades.tar.gz.part").write_bytes(full[:half])
    prepare(load_source("facades"), tmp_path / "data", mirror=base)
    assert RangeHandler.requests == [("/pix2pix/datasets/facades.tar.gz", f"bytes={half}-")]
    assert (downloads / "facades.tar.gz").read_bytes() == full
    assert len(AlignedDataset(tmp_path / "data" / "facades", "val")) == 3


def test_published_checksum_mismatch_is_refused(server: tuple[str, Path], tmp_path: Path) -> None:
    base, served = server
    (served / "lfw").mkdir()
    # right layout, wrong bytes: LFW's md5 is published, so this cannot be lfw.tgz
    with tarfile.open(served / "lfw" / "lfw.tgz", "w:gz") as tf:
        data = _jpeg(np.random.default_rng(0), 8, 8)
        info = tarfile.TarInfo("lfw/Ann/Ann_0001.jpg")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(PrepareError, match="does not match the published a17d05bd"):
        prepare(load_source("lfw"), tmp_path / "data", mirror=base)
    # the bad download is removed, so a rerun fetches the file afresh
    assert not (tmp_path / "data" / "downloads" / "lfw.tgz").exists()
    assert not (tmp_path / "data" / "lfw").exists()


def test_recorded_checksum_mismatch_is_refused(server: tuple[str, Path], tmp_path: Path) -> None:
    base, served = server
    (served / "pix2pix" / "datasets").mkdir(parents=True)
    facades_tar(served / "pix2pix" / "datasets" / "facades.tar.gz")
    prepare(load_source("facades"), tmp_path / "data", mirror=base)
    # the host now serves other bytes; the recorded first download is the reference
    facades_tar(served / "pix2pix" / "datasets" / "facades.tar.gz", n=2)
    (tmp_path / "data" / "downloads" / "facades.tar.gz").unlink()
    with pytest.raises(PrepareError, match="recorded in"):
        prepare(load_source("facades"), tmp_path / "data", root=tmp_path / "other", mirror=base)


def test_wrong_archive_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    wrong = _zip(tmp_path / "gtFine_trainvaltest.zip", {"readme.txt": b"not cityscapes"})
    code = main(["cityscapes_fine", "--data-dir", str(tmp_path / "data"), "--archive", str(wrong)])
    assert code == 1
    err = capsys.readouterr().err
    assert "is not an archive this dataset expects" in err
    assert "gtFine/train/*/*_gtFine_labelIds.png" in err
    assert not (tmp_path / "data" / "cityscapes").exists()


def test_unsafe_member_paths_are_refused(tmp_path: Path) -> None:
    evil = _zip(
        tmp_path / "kvasir-seg.zip",
        {"Kvasir-SEG/images/a.jpg": b"x", "Kvasir-SEG/masks/a.jpg": b"x", "../../evil": b"x"},
    )
    with pytest.raises(PrepareError, match="unsafe member path"):
        prepare(load_source("kvasir_seg"), tmp_path / "data", archives=[evil])


def test_login_only_dataset_from_archives(tmp_path: Path) -> None:
    """Cityscapes needs a login: the user's two zips, recognised by content, give the layout
    CityscapesSegDataset reads; its SHA-256s are recorded (none published)."""
    rng = np.random.default_rng(0)
    gt, left = {}, {}
    for phase in ("train", "val"):
        for i in range(2):
            stem = f"{phase}/aachen/aachen_{i:06d}_000019"
            labels = rng.choice(np.array([0, 7, 8, 26], dtype=np.uint8), size=(8, 16))
            gt[f"gtFine/{stem}_gtFine_labelIds.png"] = _png(labels)
            left[f"leftImg8bit/{stem}_leftImg8bit.png"] = _png(
                rng.integers(0, 255, (8, 16, 3), dtype=np.uint8)
            )
    # renamed by the user: recognised by content, not by name
    a = _zip(tmp_path / "download(1).zip", gt)
    b = _zip(tmp_path / "leftImg8bit_trainvaltest.zip", left)
    data = tmp_path / "data"
    code = main(
        ["cityscapes_fine", "--data-dir", str(data), "--archive", str(a), "--archive", str(b)]
    )
    assert code == 0
    dataset = CityscapesSegDataset(data / "cityscapes", "train", image_size=None)
    assert len(dataset) == 2
    assert set(np.unique(dataset[0]["target"].numpy())) <= {0, 1, 13, 255}
    assert "gtFine_trainvaltest.zip" in (data / "downloads" / "checksums.json").read_text()


def test_login_only_dataset_without_archive_says_how(tmp_path: Path) -> None:
    with pytest.raises(PrepareError, match="--archive /path/to/gtFine_trainvaltest.zip"):
        prepare(load_source("cityscapes_fine"), tmp_path / "data")


@pytest.mark.parametrize("name", available())
def test_registry_entries_are_complete(name: str) -> None:
    source = load_source(name)
    assert source.name == name and source.root and source.homepage.startswith("http")
    for f in source.sources:
        assert f.expect or not f.unpack, f"{name}/{f.filename}: nothing to recognise it by"
        if f.published:
            algorithm, digest = f.published
            assert len(digest) == {"md5": 32, "sha256": 64}[algorithm]
            int(digest, 16)
