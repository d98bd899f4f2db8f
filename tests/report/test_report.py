"""HTML audit reports of a committed attack folder and of a committed table: self-contained,
numbers equal to the records, a ROC figure per attack cut at the resolvable FPR, clear
errors for bad records, thumbnails found or said missing."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from miabench.metrics.roc import MIN_NONMEMBERS_PER_FPR, reached_operating_point
from miabench.report import ReportError, build_report, build_table_report
from miabench.report.figures import roc_loglog_figure, roc_with_band
from miabench.report.samples import _inside
from miabench.report.summary import pct
from tests.conftest import compose_cfg

REPO = Path(__file__).resolve().parents[2]
RUN = (
    REPO
    / "results"
    / "embedded_pix2pix"
    / "runs"
    / "pix2pix-edges2fashion-none-s0-ad5e12813afc21fb"
)
TABLE = REPO / "results" / "defenses_pix2pix"
#: the runs of the table test: two defenses, two seeds each (the whole table has 40)
TABLE_RUNS = [
    f"pix2pix-edges2fashion-{name}"
    for name in (
        "none-s0-8ebd1d486bef2835",
        "none-s1-68b94f0bcbe809a3",
        "dpsgd-s0-98e1dbdf00eeb611",
        "dpsgd-s1-1e334e97417f7a9b",
    )
]


class Page(HTMLParser):
    """Every start tag with its attributes, and the text inside elements with an id."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [
            a
            for t, a in self.tags
            if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]


def assert_self_contained(html: str) -> None:
    page = Page(html)
    for tag, attrs in page.tags:
        for key in ("src", "href", "xlink:href", "action", "data"):
            value = attrs.get(key, "")
            assert not value.startswith(("http://", "https://", "//")), (tag, key, value)
            if key == "src" and key in attrs:
                assert value.startswith("data:"), (tag, value[:40])
        assert tag not in ("script", "link", "iframe", "object"), tag
    assert "url(http" not in html and "@import" not in html


@pytest.fixture(scope="module")
def run_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    folder = tmp_path_factory.mktemp("run") / RUN.name
    shutil.copytree(RUN, folder)
    # images of the top members at <data_dir>/edges2fashion/<sample_id>, no split manifest:
    # shown, marked unverified; the others are said to be missing
    data = tmp_path_factory.mktemp("data")
    scores = pd.read_csv(folder / "scores.csv")
    test = scores[(scores["split"] == "test") & (scores["label"] == 1)]
    top = test.sort_values("membership_error.score", ascending=False)["sample_id"].head(3)
    for sample_id in top:
        (data / "edges2fashion" / sample_id).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 8), (200, 10, 10)).save(data / "edges2fashion" / sample_id)
    path = build_report(folder, data_dir=data, cache_dir=data / "no_cache", n_exposed=5)
    assert path == folder / "report.html"
    result = json.loads((folder / "results.json").read_text())
    return path, result, path.read_text(encoding="utf-8")


def test_run_report_makes_no_network_request(run_report: tuple[Path, dict, str]) -> None:
    assert_self_contained(run_report[2])


def test_summary_numbers_are_results_json(run_report: tuple[Path, dict, str]) -> None:
    _, result, html = run_report
    info = result["attacks"]["membership_error"]  # the strongest at 1 % FPR (78 % vs 66 %)
    assert "(<b>membership_error</b>" in html
    page = Page(html[html.index('id="summary"') : html.index('id="limits"')])
    shown = {a["data-key"]: a["data-value"] for t, a in page.tags if "data-key" in a}
    key = "tpr_at_1pct_fpr_reached"  # 100 test non-members: 1 % FPR itself is not observable
    assert float(shown[key]) == info[key]
    assert float(shown[f"{key}_low"]) == info[f"{key}_ci95"][0]
    assert float(shown[f"{key}_high"]) == info[f"{key}_ci95"][1]
    assert float(shown[f"{key}_fpr"]) == info[f"{key}_fpr"]
    assert float(shown[f"{key}_hits"]) == info[f"{key}_counts"][0]
    assert float(shown["auc"]) == info["auc"]
    assert f">{pct(info[key])}</span>" in html  # the printed figure is that number
    assert "1000 needed" in html


def test_every_attack_has_roc_figures_cut_at_the_resolvable_fpr(
    run_report: tuple[Path, dict, str],
) -> None:
    _, result, html = run_report
    page = Page(html)
    for name, info in result["attacks"].items():
        assert len(page.find("figure", **{"class": "roc-linear", "data_attack": name})) == 1
        (loglog,) = page.find("figure", **{"class": "roc-loglog", "data_attack": name})
        cut = MIN_NONMEMBERS_PER_FPR / info["n_test_nonmembers"]
        assert float(loglog["data-resolvable-fpr"]) == pytest.approx(cut)
        assert float(loglog["data-min-curve-fpr"]) >= cut - 1e-12
    assert html.count("<svg") == 2 * len(result["attacks"])


def test_loglog_figure_draws_no_curve_below_the_cut() -> None:
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(40, dtype=int), np.zeros(200, dtype=int)]
    rng_scores = rng.normal(size=240) + 2 * labels
    curve = roc_with_band("a", rng_scores, labels)
    (ax,) = roc_loglog_figure([curve], "t").axes
    (line,) = [line for line in ax.get_lines() if line.get_label() == "a"]
    assert min(line.get_xdata()) >= MIN_NONMEMBERS_PER_FPR / 200 - 1e-12
    assert curve.band_fpr[0] == 0 and curve.band_fpr[-1] == 1
    # the band is results.json's reached-point interval, at each of its FPRs
    for at, low, high in list(zip(curve.band_fpr, curve.band_low, curve.band_high, strict=True))[
        ::20
    ]:
        point = reached_operating_point(rng_scores, labels, at)
        key = next(k for k in point if k.endswith("_reached_ci95"))
        assert [low, high] == pytest.approx(point[key])


def test_exposed_samples_found_or_said_missing(run_report: tuple[Path, dict, str]) -> None:
    html = run_report[2]
    page = Page(html[html.index('id="exposed"') :])
    assert len(page.find("img")) == 3  # the three images written, shown unverified
    assert html.count("(unverified)") == 3 and html.count("image not found") == 2
    assert "no split manifest" in html


def test_sample_ids_cannot_leave_the_data_root(tmp_path: Path) -> None:
    assert _inside(tmp_path, "train/a.png") == (tmp_path / "train" / "a.png").resolve()
    assert _inside(tmp_path, "../../etc/passwd") is None
    assert _inside(tmp_path, "/etc/passwd") is None


def test_missing_or_corrupt_records_are_named(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    with pytest.raises(ReportError, match=r"run/results\.json: no such file"):
        build_report(folder)
    (folder / "results.json").write_text("{not json")
    with pytest.raises(ReportError, match=r"run/results\.json: not valid JSON"):
        build_report(folder)
    result = json.loads((RUN / "results.json").read_text())
    del result["attacks"]["reconstruction"]["auc"]
    (folder / "results.json").write_text(json.dumps(result))
    with pytest.raises(ReportError, match=r"results\.json: attacks\.reconstruction\.auc"):
        build_report(folder)
    # scores that do not give the recorded AUC: from another run, or edited
    shutil.copy(RUN / "results.json", folder / "results.json")
    scores = pd.read_csv(RUN / "scores.csv")
    scores["reconstruction.score"] = scores["reconstruction.score"].to_numpy()[::-1]
    scores.to_csv(folder / "scores.csv", index=False)
    with pytest.raises(ReportError, match=r"scores\.csv: the scores of 'reconstruction'"):
        build_report(folder)
    assert not (folder / "report.html").exists()


@pytest.fixture(scope="module")
def table_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, str]:
    results = tmp_path_factory.mktemp("results")
    out = results / TABLE.name
    for name in ("defenses_pix2pix.csv", "defenses_pix2pix.md"):
        (out / "runs").mkdir(parents=True, exist_ok=True)
        shutil.copy(TABLE / name, out / name)
    for run in TABLE_RUNS:
        shutil.copytree(TABLE / "runs" / run, out / "runs" / run)
    table = compose_cfg("make_table", ["table=defenses_pix2pix", f"paths.results_dir={results}"])
    path = build_table_report(table.table)
    assert path == out / "report.html"
    return pd.read_csv(out / "defenses_pix2pix.csv"), path.read_text(encoding="utf-8")


def test_table_report_numbers_tests_and_plots(table_report: tuple[pd.DataFrame, str]) -> None:
    frame, html = table_report
    assert_self_contained(html)
    page = Page(html)
    for _, row in frame.iterrows():
        part = html[html.index(f'data-row="{row["defense"]}"') :]
        spans = Page(part[: part.index("</li>")]).tags
        shown = {a["data-key"]: float(a["data-value"]) for _, a in spans if "data-key" in a}
        best = max(("membership_error", "reconstruction"), key=lambda a: row[f"{a}_auc"])
        assert shown == {
            "auc": row[f"{best}_auc"],
            "auc_lo": row[f"{best}_auc_lo"],
            "auc_hi": row[f"{best}_auc_hi"],
        }
    n_tests = int(frame.filter(like="_p_adj").notna().to_numpy().sum())
    assert html[html.index('id="tests"') :].split("</table>")[0].count("<tr>") == n_tests + 1
    assert len(page.find("figure", **{"class": "privacy-utility"})) == 1
    for setting in ("pix2pix / edges2fashion / none", "pix2pix / edges2fashion / dpsgd"):
        assert len(page.find("figure", **{"class": "roc-linear", "data_setting": setting})) == 1
        (loglog,) = page.find("figure", **{"class": "roc-loglog", "data_setting": setting})
        assert float(loglog["data-min-curve-fpr"]) >= float(loglog["data-resolvable-fpr"])
    assert "2 trained models per setting (seeds 0, 1)" in html


def test_table_report_without_its_csv_says_to_make_it(tmp_path: Path) -> None:
    table = compose_cfg("make_table", ["table=defenses_pix2pix", f"paths.results_dir={tmp_path}"])
    with pytest.raises(ReportError, match=r"defenses_pix2pix\.csv: no such file.*make_table"):
        build_table_report(table.table)
