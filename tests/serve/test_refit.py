"""A trainable attack (a tiny MINT auditor) served: refitted on the run's calibration half,
it reproduces the recorded scores; where the recorded scores are another auditor's, the
server calibrates on its own auditor's scores and says how far they are from the record.
Scores of the samples the auditor learned from never calibrate: the rest of the calibration
half does, or the test half where too little of it is left (the tiny run's auditor learns
from all of it)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from miabench.pipeline.attack import run_attack
from miabench.pipeline.record import write_csv
from miabench.pipeline.train import train_victim
from miabench.serve.auditor import MIN_CALIBRATION_PER_CLASS, REFIT_THREADS, Auditor
from tests.conftest import compose_cfg
from tests.pipeline.test_mint_pipeline import faces_overrides, write_faces
from tests.serve.conftest import ServedRun, make_app

AUDITOR = "mint_mlp_all_conv"
COLUMN = f"{AUDITOR}.score"


@pytest.fixture(scope="module")
def mint_run(tmp_path_factory: pytest.TempPathFactory) -> ServedRun:
    """An iresnet_test victim (never trained: the auditor's fit is what is tested) on 16x16
    noise faces, audited by one MINT MLP, with the overrides its Hydra app would record."""
    start = time.perf_counter()
    data = tmp_path_factory.mktemp("mint_faces")
    write_faces(data, n_ids=10, per_id=8)
    out = tmp_path_factory.mktemp("mint_out")
    overrides = faces_overrides(
        data,
        "data.n_member_identities=3",
        "data.n_nonmember_identities=7",
        "split.n_members=24",
        "split.n_nonmembers=40",
        "trainer.max_epochs=0",
        "mint.mlp_epochs=4",
        "evaluation.bootstrap=20",
    )
    cfg = compose_cfg("run_attack", overrides, root_dir=out)
    cfg.attack = {AUDITOR: cfg.attack[AUDITOR]}  # the served auditor alone keeps it short
    victim = train_victim(cfg)
    mp = pytest.MonkeyPatch()
    mp.setattr("miabench.utils.provenance.hydra_overrides", lambda: list(overrides))
    try:
        results = run_attack(cfg, victim)
    finally:
        mp.undo()
    print(f"mint_run fixture: {time.perf_counter() - start:.1f} s")
    return ServedRun(out, data, results.parent, overrides)


def _audit_one(client: TestClient, run: ServedRun) -> dict:
    image = next(run.data.rglob("*.png"))
    response = client.post(
        "/api/audit",
        data={"model": run.folder.name},
        files=[("images", ("face.png", image.read_bytes(), "image/png"))],
    )
    assert response.status_code == 200, response.text
    return response.json()


def _copy(folder: Path, to: Path) -> Path:
    """The attack folder's files under ``to`` (another outputs root's attack folder)."""
    target = to / "outputs" / "attacks" / folder.name
    target.mkdir(parents=True)
    for path in folder.iterdir():
        if path.is_file():
            (target / path.name).write_bytes(path.read_bytes())
    return target


def test_refit_reproduces_the_recorded_scores(mint_run: ServedRun) -> None:
    app = make_app(mint_run, ["serve.bootstrap=20"])
    answer = _audit_one(TestClient(app), mint_run)
    refit = answer["refit"]
    assert refit["reproduced"] is True
    assert refit["tries"][0]["torch_threads"] == REFIT_THREADS[0] == 1
    assert refit["tries"][-1]["max_abs_difference"] <= 1e-4
    assert answer["calibration"]["scores"] == "recorded (scores.csv)"
    auditor = app.state.service.auditor(mint_run.folder.name)
    scores = pd.read_csv(mint_run.folder / "scores.csv")
    # n_train covers the whole calibration half: the test half calibrates, as it says
    assert auditor.attack.fitted_on == set(scores.loc[scores.split == "calibration", "sample_id"])
    assert answer["calibration"]["calibrated_on"].startswith("the run's test half")
    recorded = scores[(scores.split == "test") & (scores.label == 1)][COLUMN]
    assert np.array_equal(auditor.calibration.members, np.sort(recorded.to_numpy()))


def test_another_auditors_record_is_recalibrated_on_the_served_auditor(
    mint_run: ServedRun, tmp_path: Path
) -> None:
    # the same run, but its recorded MINT scores are another auditor's (as a run trained with
    # other threads or on a GPU would be): shifted by 0.01 one way or the other
    folder = _copy(mint_run.folder, tmp_path)
    scores = pd.read_csv(mint_run.folder / "scores.csv")
    shift = np.where(np.arange(len(scores)) % 2 == 0, 0.01, -0.01)
    other = scores.assign(**{COLUMN: scores[COLUMN] + shift})
    write_csv(folder / "scores.csv", other)
    app = make_app(mint_run, ["serve.bootstrap=20", f"serve.models=[{folder}]"])
    page = TestClient(app).post(
        f"/models/{folder.name}/audit",
        data={"model": folder.name},
        files=[("images", ("face.png", next(mint_run.data.rglob("*.png")).read_bytes()))],
    )
    assert page.status_code == 200, page.text
    assert "refitted" in page.text and "does <b>not</b> reproduce" in page.text
    answer = _audit_one(TestClient(app), ServedRun(mint_run.out, mint_run.data, folder, []))
    refit = answer["refit"]
    assert refit["reproduced"] is False
    calibration = scores.split == "calibration"
    assert refit["calibration_rescored"] == int(calibration.sum())
    # the served auditor is the run's own (it reproduces the original record), so its
    # calibration scores are the shifted record minus the shift
    assert refit["calibration_max_abs_difference"] == pytest.approx(0.01, abs=1e-5)
    assert refit["calibration_mean_abs_difference"] == pytest.approx(0.01, abs=1e-5)
    assert answer["calibration"]["scores"] == "rescored by the refitted auditor"
    auditor = app.state.service.auditor(folder.name)
    # the test half that calibrates is rescored too: the run's own auditor's scores again
    original = scores[(scores.split == "test") & (scores.label == 1)][COLUMN].to_numpy()
    np.testing.assert_allclose(auditor.calibration.members, np.sort(original), atol=1e-6)
    # percentiles and decisions are read against those scores
    score = answer["images"][0]["score"]
    expected = 100 * np.mean(auditor.calibration.members < score) + 50 * np.mean(
        auditor.calibration.members == score
    )
    assert answer["images"][0]["percentile_among_members"] == pytest.approx(expected)


def test_attacks_that_learn_nothing_keep_the_strict_check(
    served_run: ServedRun, tmp_path: Path
) -> None:
    folder = _copy(served_run.folder, tmp_path)
    scores = pd.read_csv(served_run.folder / "scores.csv")
    column = "reconstruction.score"
    write_csv(folder / "scores.csv", scores.assign(**{column: scores[column] + 0.01}))
    client = TestClient(make_app(served_run, [f"serve.models=[{folder}]"]))
    name, data = "0000.png", (served_run.data / "train" / "0000.png").read_bytes()
    response = client.post(
        "/api/audit", data={"model": folder.name}, files=[("images", (name, data, "image/png"))]
    )
    assert response.status_code == 422
    assert "differ from scores.csv by up to 0.01" in response.json()["error"]


def _rows(fitted: set[str]) -> tuple[pd.DataFrame, str]:
    """The calibration rows an auditor whose attack learned from ``fitted`` chooses, over a
    run of 60 calibration (30 per class) and 40 test samples."""
    n_cal, n_test = 60, 40
    scores = pd.DataFrame(
        {
            "sample_id": [f"s{i:03d}" for i in range(n_cal + n_test)],
            "split": ["calibration"] * n_cal + ["test"] * n_test,
            "label": [i % 2 for i in range(n_cal + n_test)],
            "role": ["member" if i % 2 else "nonmember" for i in range(n_cal + n_test)],
            COLUMN: np.linspace(0, 1, n_cal + n_test),
        }
    )
    fake = type("A", (), {"fitted_on": frozenset(fitted)})()
    owner = type("Owner", (), {"attack": fake, "refit": None})()
    return Auditor._calibration_rows(owner, scores, COLUMN)


def test_samples_the_auditor_learned_from_never_calibrate() -> None:
    rows, said = _rows(set())  # an attack that learns nothing: the whole calibration half
    assert len(rows) == 60 and set(rows.split) == {"calibration"}
    assert said == "the run's calibration half"
    learned = {f"s{i:03d}" for i in range(16)}  # 8 per class: 22 per class left
    rows, said = _rows(learned)
    assert set(rows.split) == {"calibration"} and not set(rows.sample_id) & learned
    assert len(rows) == 60 - 16 and "less the 16 samples the auditor learned from" in said
    # fewer than the minimum of a class left: the test half, which no attack learns from
    learned = {f"s{i:03d}" for i in range(2 * (30 - MIN_CALIBRATION_PER_CLASS) + 2)}
    rows, said = _rows(learned)
    assert set(rows.split) == {"test"} and len(rows) == 40
    assert said.startswith("the run's test half")
