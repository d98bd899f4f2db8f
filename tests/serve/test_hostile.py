"""Hostile uploads and floods: each a clear 4xx/503, and the server keeps serving."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.serve.conftest import ServedRun, make_app


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(side: int = 50_000) -> bytes:
    """A PNG whose header claims side x side pixels, with a few bytes of compressed data:
    a decompression bomb built in microseconds."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit grey
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + _chunk(b"IEND", b"")
    )


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'

HOSTILE = {
    "empty": (b"", 422, "empty file"),
    "truncated": (png(64, 32)[:60], 422, "corrupt"),
    "bomb": (huge_png(), 422, "exceed the limit"),
    "svg_with_script": (SVG, 422, "not a PNG, JPEG or WebP"),
    "text_named_png": (b"just some text, honest", 422, "not a PNG, JPEG or WebP"),
    "wrong_layout": (png(48, 32), 422, "not this dataset's layout"),
}


@pytest.fixture(scope="module")
def client(served_run: ServedRun) -> TestClient:
    app = make_app(served_run, ["serve.max_upload_mb=1", "serve.max_images=16"])
    return TestClient(app)


def _post(client: TestClient, model: str, files: list[tuple[str, bytes]], **kw) -> object:
    return client.post(
        "/api/audit",
        data={"model": model},
        files=[("images", (name, data, "image/png")) for name, data in files],
        **kw,
    )


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_upload_is_refused_and_server_keeps_serving(
    client: TestClient, served_run: ServedRun, case: str
) -> None:
    data, status, words = HOSTILE[case]
    response = _post(client, served_run.folder.name, [(f"{case}.png", data)])
    assert response.status_code == status, response.text
    assert words in response.json()["error"] and f"{case}.png" in response.json()["error"]
    good = (served_run.data / "train" / "0000.png").read_bytes()
    assert _post(client, served_run.folder.name, [("ok.png", good)]).status_code == 200


def test_limits_and_unknown_models(client: TestClient, served_run: ServedRun) -> None:
    model = served_run.folder.name
    tiny = png(64, 32)
    many = _post(client, model, [(f"{i}.png", tiny) for i in range(1000)])
    assert many.status_code == 413 and "max_images" in many.json()["error"]
    big = _post(client, model, [("big.png", b"\x89PNG\r\n\x1a\n" + bytes(2 * 2**20))])
    assert big.status_code == 413 and "max_upload_mb" in big.json()["error"]
    unknown = _post(client, "../../etc/passwd", [("a.png", tiny)])
    assert unknown.status_code == 404 and "no model" in unknown.json()["error"]
    no_model = client.post("/api/audit", files=[("images", ("a.png", tiny, "image/png"))])
    assert no_model.status_code == 400
    cross = _post(client, model, [("a.png", tiny)], headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403
    assert "access-control-allow-origin" not in cross.headers
    assert client.get("/healthz").status_code == 200


def test_full_pool_answers_503(client: TestClient, served_run: ServedRun) -> None:
    slots = client.app.state.service.slots
    taken = 0
    while slots.acquire(blocking=False):  # every slot busy, as concurrent audits would be
        taken += 1
    good = (served_run.data / "train" / "0000.png").read_bytes()
    try:
        busy = _post(client, served_run.folder.name, [("ok.png", good)])
        assert busy.status_code == 503 and "busy" in busy.json()["error"]
    finally:
        for _ in range(taken):
            slots.release()
    assert taken == 1 + 16  # serve.workers + serve.queue
    assert _post(client, served_run.folder.name, [("ok.png", good)]).status_code == 200
