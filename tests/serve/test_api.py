"""The JSON API on a tiny embedded victim: scores, calibration, ground truth, OpenAPI."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.serve.conftest import ServedRun, make_app


@pytest.fixture(scope="module")
def client(served_run: ServedRun) -> TestClient:
    return TestClient(make_app(served_run))


def _files(run: ServedRun, role: str) -> list[tuple[str, bytes]]:
    manifest = pd.read_csv(next(run.out.rglob("victims/*/manifest.csv")))
    ids = manifest[manifest.role == role].sample_id
    return [(i, (run.data / i).read_bytes()) for i in ids]


def _audit(client: TestClient, model: str, files: list[tuple[str, bytes]]) -> dict:
    response = client.post(
        "/api/audit",
        data={"model": model},
        files=[("images", (name.split("/")[-1], data, "image/png")) for name, data in files],
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_models_and_health(client: TestClient, served_run: ServedRun) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "models": 1}
    (model,) = client.get("/api/models").json()
    assert model["id"] == served_run.folder.name
    assert model["served_attack"] == "reconstruction"
    assert 0.0 <= model["strongest_attack"]["auc"] <= 1.0
    assert len(model["strongest_attack"]["auc_interval"]) == 2
    schema = client.get("/openapi.json").json()
    assert "multipart/form-data" in schema["paths"]["/api/audit"]["post"]["requestBody"]["content"]
    assert {"413", "422"} <= set(schema["paths"]["/api/audit"]["post"]["responses"])


@pytest.mark.slow
def test_members_score_higher_and_match_the_recorded_scores(
    client: TestClient, served_run: ServedRun
) -> None:
    model = served_run.folder.name
    members = _audit(client, model, _files(served_run, "member"))
    nonmembers = _audit(client, model, _files(served_run, "nonmember"))
    m = np.array([r["score"] for r in members["images"]])
    n = np.array([r["score"] for r in nonmembers["images"]])
    assert m.mean() > n.mean(), (m, n)
    # the served path (upload → dataset transform → victim → attack) is the run's path
    recorded = pd.read_csv(served_run.folder / "scores.csv").set_index("sample_id")
    for report in members["images"] + nonmembers["images"]:
        expected = recorded.loc[f"train/{report['filename']}", "reconstruction.score"]
        assert report["score"] == pytest.approx(expected, abs=1e-6)
        assert 0.0 <= report["membership_probability"] <= 1.0
        low, high = report["probability_interval"]
        assert low <= high
        assert 0.0 <= report["percentile_among_members"] <= 100.0
        assert set(report["decision_at_fpr"]) == {"0.01", "0.1"}
        # 12 calibration non-members cannot resolve 1 % FPR (nor 10 %: 10/0.1 = 100)
        assert report["decision_at_fpr"]["0.01"]["member"] is None
        assert "not observable" in report["decision_at_fpr"]["0.01"]["note"]
        assert "ground_truth" not in report  # not revealed by default
    assert members["calibration"]["prior"] == 0.5
    mean_p = np.mean([r["membership_probability"] for r in members["images"]])
    assert mean_p > np.mean([r["membership_probability"] for r in nonmembers["images"]])


def test_ground_truth_only_when_revealed(served_run: ServedRun) -> None:
    client = TestClient(make_app(served_run, ["serve.reveal_ground_truth=true"]))
    (name, data), (other, other_data) = (
        _files(served_run, "member")[0],
        _files(served_run, "nonmember")[0],
    )
    # a re-encoded copy (other bytes, same pixels) is still recognised by its content
    pixels = np.asarray(Image.open(io.BytesIO(data)))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    reports = _audit(
        client, served_run.folder.name, [(name, buffer.getvalue()), (other, other_data)]
    )
    assert [r["ground_truth"] for r in reports["images"]] == ["member", "nonmember"]


def test_report_page_marks_the_score_on_the_models_histograms(
    client: TestClient, served_run: ServedRun
) -> None:
    model = served_run.folder.name
    name, data = _files(served_run, "member")[0]
    api = _audit(client, model, [(name, data)])
    assert api["refit"] is None  # the reconstruction error learns nothing
    assert api["calibration"]["scores"] == "recorded (scores.csv)"
    page = client.post(
        f"/models/{model}/audit",
        data={"model": model},
        files=[("images", ("a.png", data, "image/png"))],
    )
    assert page.status_code == 200, page.text
    html = page.text
    svg = ET.fromstring(html[html.index("<svg") : html.index("</svg>") + len("</svg>")])
    markers = [
        e for e in svg.iter("{http://www.w3.org/2000/svg}line") if e.get("class") == "marker"
    ]
    assert len(markers) == 2  # members' and non-members' panels
    assert all(float(m.get("data-score")) == api["images"][0]["score"] for m in markers)
    titles = [
        e.text for e in svg.iter("{http://www.w3.org/2000/svg}text") if e.get("class") == "title"
    ]
    calibration = api["calibration"]
    assert titles == [
        f"calibration members (n={calibration['n_calibration_members']})",
        f"calibration non-members (n={calibration['n_calibration_nonmembers']})",
    ]
    assert "refitted" not in html
