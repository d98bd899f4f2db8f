"""Privacy–utility table: every seed kept, defenses compared with `none` by paired bootstrap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from miabench.metrics.bootstrap import roc_intervals
from miabench.metrics.roc import evaluate_scores
from miabench.results.privacy_utility import privacy_utility_frame, write_privacy_utility
from miabench.results.reference_columns import selection_half
from miabench.results.runs import collect_results

N = 300  # 150 members + 150 non-members, half of each in the test half


def _write(folder: Path, defense: str, seed: int, score: np.ndarray, psnr: np.ndarray) -> None:
    labels = np.r_[np.ones(N // 2, dtype=int), np.zeros(N // 2, dtype=int)]
    ids = [f"img{i:03d}.png" for i in range(N)]
    role = np.where(labels == 1, "member", "nonmember")
    split = np.where(np.arange(N) % 2 == 0, "calibration", "test")
    test = split == "test"
    metrics = evaluate_scores(score, labels, ~test)
    metrics.update(roc_intervals(score[test], labels[test], n_boot=200, seed=seed))
    result = {
        "run": {"victim": "pix2pix", "dataset": "d", "defense": defense, "seed": seed},
        "utility": {"nonmember": {"psnr": float(psnr[labels == 0].mean())}},
        "attacks": {"reconstruction": {**metrics, "describe": {}}},
    }
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "sample_id": ids,
            "role": role,
            "label": labels,
            "split": split,
            "reconstruction.score": score,
        }
    ).to_csv(folder / "scores.csv", index=False)
    pd.DataFrame({"sample_id": ids, "role": role, "psnr": psnr}).to_csv(
        folder / "utility.csv", index=False
    )
    (folder / "results.json").write_text(json.dumps(result))


@pytest.fixture
def comparison(tmp_path: Path) -> list[Path]:
    labels = np.r_[np.ones(N // 2), np.zeros(N // 2)]
    for seed in range(3):
        rng = np.random.default_rng(seed)
        score = rng.normal(size=N) + 1.5 * labels
        psnr = rng.normal(20, 2, size=N)
        _write(tmp_path / f"none{seed}", "none", seed, score, psnr)
        # a "defense" that changes nothing: same scores, same utility
        _write(tmp_path / f"same{seed}", "identical", seed, score, psnr)
        # a defense that blinds the attack and costs a little utility on the same images
        blind = rng.normal(size=N)
        _write(tmp_path / f"dp{seed}", "dpsgd", seed, blind, psnr - 1 + rng.normal(0, 0.3, N))
    return sorted(tmp_path.glob("*/results.json"))


def test_paired_differences_with_none(comparison: list[Path]) -> None:
    results = collect_results(comparison)
    frame = privacy_utility_frame(results, utility=("psnr",)).set_index("defense")
    assert list(frame.index) == ["none", "dpsgd", "identical"]
    assert (frame.n_seeds == 3).all() and (frame.seeds == "0,1,2").all()
    assert frame.n_test_members.tolist() == [75] * 3

    same = frame.loc["identical"]
    assert same["reconstruction_auc_vs_none"] == 0 and not same["reconstruction_auc_vs_none_sig"]
    assert same["reconstruction_auc_vs_none_lo"] == same["reconstruction_auc_vs_none_hi"] == 0
    assert same["nonmember_psnr_vs_none"] == 0 and not same["nonmember_psnr_vs_none_sig"]

    dp, none = frame.loc["dpsgd"], frame.loc["none"]
    assert dp["reconstruction_auc_vs_none"] == pytest.approx(
        dp["reconstruction_auc"] - none["reconstruction_auc"]
    )
    assert dp["reconstruction_auc_vs_none_sig"] and dp["reconstruction_auc_vs_none_hi"] < 0
    # 75 test non-members cannot resolve 1 % FPR: no difference claimed either way
    assert pd.isna(dp["reconstruction_tpr_at_1pct_fpr_vs_none"])
    assert not dp["reconstruction_tpr_at_1pct_fpr_vs_none_sig"]
    assert "75 test non-members < 1000" in dp["reconstruction_tpr_at_1pct_fpr_vs_none_note"]
    assert dp["nonmember_psnr_vs_none_sig"] and dp["nonmember_psnr_vs_none_hi"] < 0
    assert dp["nonmember_psnr_vs_none"] == pytest.approx(
        dp["nonmember_psnr"] - none["nonmember_psnr"]
    )

    per_seed = privacy_utility_frame(results, utility=("psnr",), per_seed=True)
    assert len(per_seed) == 9 and list(per_seed.defense[:3]) == ["none"] * 3
    one = per_seed[(per_seed.defense == "dpsgd") & (per_seed.seeds == "1")].iloc[0]
    assert one["n_seeds"] == 1 and one["reconstruction_auc_vs_none"] < 0


def test_written_table_marks_significant_differences(comparison: list[Path], tmp_path: Path):
    out = tmp_path / "table"
    table = {"name": "t", "title": "T", "out_dir": str(out), "command": "c"}
    md, csv = write_privacy_utility({**table, "utility": {"metrics": ["psnr"]}}, comparison)
    text = md.read_text(encoding="utf-8")
    dp = next(line for line in text.splitlines() if line.startswith("| dpsgd"))
    same = next(line for line in text.splitlines() if line.startswith("| identical"))
    assert "]*" in dp and "*" not in same and "| n/o |" in dp
    assert "0.000 ± 0.000 [0.000, 0.000] |" in same
    assert len(pd.read_csv(out / "t_per_seed.csv")) == 9 and (out / "t.png").stat().st_size
    assert "reconstruction_auc_vs_none_lo" in pd.read_csv(csv).columns


def test_mismatched_test_samples_are_refused(comparison: list[Path], tmp_path: Path) -> None:
    scores = comparison[0].parent / "scores.csv"  # dp0
    frame = pd.read_csv(scores)
    frame["sample_id"] = "other_" + frame["sample_id"]
    frame.to_csv(scores, index=False)
    with pytest.raises(ValueError, match="different test samples"):
        privacy_utility_frame(collect_results(comparison), utility=())


def _write_reference_run(folder: Path, defense: str, strength: float, seed: int = 0) -> None:
    """A reference-model run's results.json and leave-one-out scores: a reference-free attack
    with a weak signal and two calibrated attacks, one of them ``strength`` strong."""
    from miabench.metrics.clustered import clustered_roc_intervals
    from miabench.metrics.roc import roc_metrics

    rng = np.random.default_rng(seed + int(10 * strength))
    n, k = 1000, 5  # 1000 distinct non-member samples resolve 1 % FPR
    labels = np.zeros((n, k), dtype=int)
    for row in labels:
        row[rng.permutation(k)[:2]] = 1
    scores = {
        "reconstruction": rng.normal(size=(n, k)) + 0.3 * labels,
        "lira_online": rng.normal(size=(n, k)) + strength * labels,
        "rmia_online": rng.normal(size=(n, k)) + 0.5 * labels,
    }
    free = {"_target_": "miabench.pipeline.reference.reference_free", "_partial_": True}
    loo = {}
    for name, s in scores.items():
        loo[name] = {
            **roc_metrics(s.reshape(-1), labels.reshape(-1), (0.01,)),
            **clustered_roc_intervals(s, labels, fprs=(0.01,), n_boot=100),
        }
    result = {
        "run": {
            "victim": "pix2pix",
            "dataset": "d",
            "defense": defense,
            "seed": seed,
            "reference": {"n_models": k - 1, "knowledge": "same_recipe", "recipe": {}},
        },
        "attacks": {
            name: {"describe": {"score": free if name == "reconstruction" else {}}}
            for name in scores
        },
        "leave_one_out": loo,
    }
    folder.mkdir(parents=True)
    frame = pd.DataFrame(
        {
            "sample_id": np.repeat([f"img{i:03d}.png" for i in range(n)], k),
            "model": np.tile(np.arange(k), n),
            "label": labels.reshape(-1),
            **{f"{name}.score": s.reshape(-1) for name, s in scores.items()},
        }
    )
    # rows shuffled: the table must not rely on the file's order
    frame.sample(frac=1.0, random_state=0).to_csv(folder / "scores_leave_one_out.csv", index=False)
    (folder / "results.json").write_text(json.dumps(result))


def test_each_defense_is_judged_by_its_strongest_reference_attack(
    comparison: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The best calibrated attack of each defense's reference run is picked by leave-one-out
    TPR at 1 % FPR, shown beside the same run's reference-free attack with a paired test, and
    written into the privacy-utility table; a defense without a reference run stays empty."""
    refs = tmp_path / "refs"
    _write_reference_run(refs / "none", "none", strength=2.5)
    _write_reference_run(refs / "dp", "dpsgd", strength=0.0)  # rmia_online is then the best
    reference = collect_results(sorted(refs.glob("*/results.json")))
    frame = privacy_utility_frame(
        collect_results(comparison), utility=("psnr",), reference_results=reference
    ).set_index("defense")

    none, dp = frame.loc["none"], frame.loc["dpsgd"]
    assert none["best_reference_attack"] == "lira_online"
    assert dp["best_reference_attack"] == "rmia_online"
    assert none["reference_models"] == 4
    # chosen on one half of the samples, measured on the other (a hash of the sample id)
    pairs = pd.read_csv(refs / "none" / "scores_leave_one_out.csv")
    measured = pairs[~selection_half(pairs["sample_id"])]
    auc = {
        a: roc_auc_score(measured["label"], measured[f"{a}.score"])
        for a in ("lira_online", "reconstruction")
    }
    assert 0.3 < len(measured) / len(pairs) < 0.7
    assert none["best_reference_auc"] == pytest.approx(auc["lira_online"])
    assert none["reference_free_auc"] == pytest.approx(auc["reconstruction"])
    assert none["best_vs_free_auc"] == pytest.approx(
        auc["lira_online"] - auc["reconstruction"], abs=1e-12
    )
    assert none["best_vs_free_auc_p"] < 0.01 and none["best_vs_free_auc_sig"]
    assert (
        none["best_reference_auc_lo"] <= none["best_reference_auc"] <= none["best_reference_auc_hi"]
    )
    assert pd.isna(frame.loc["identical"]["best_reference_attack"])
    assert none["reference_seed"] == 0
    # one row per seed: only the seed the reference run was made with shows it
    per_seed = privacy_utility_frame(
        collect_results(comparison), utility=("psnr",), per_seed=True, reference_results=reference
    )
    shown = per_seed[per_seed.defense == "none"].set_index("seeds")["best_reference_attack"]
    assert shown["0"] == "lira_online" and shown[["1", "2"]].isna().all()

    table = {
        "name": "defenses",
        "title": "t",
        "out_dir": str(tmp_path / "out"),
        "command": "c",
        "utility": {"metrics": ["psnr"]},
        "reference": {"results": [str(refs / "*" / "results.json")], "command": "r"},
    }
    md_path, _ = write_privacy_utility(table, comparison)
    text = md_path.read_text()
    assert "best_reference_attack" in text and "lira_online" in text
    # the plot shows the attacks' AUCs only, not differences or the reference runs' columns
    from miabench.results import privacy_utility_plot

    plotted = []
    real = privacy_utility_plot.Figure.add_subplot

    def spy(fig, *args, **kwargs):
        ax = real(fig, *args, **kwargs)
        original = ax.errorbar
        ax.errorbar = lambda *a, **k: plotted.append(k["label"]) or original(*a, **k)
        return ax

    monkeypatch.setattr(privacy_utility_plot.Figure, "add_subplot", spy)
    frame = privacy_utility_frame(
        collect_results(comparison), utility=("psnr",), reference_results=reference
    )
    privacy_utility_plot.plot_privacy_utility(frame, tmp_path / "p.png", "nonmember_psnr", "t")
    monkeypatch.undo()
    assert plotted == ["reconstruction"]
    assert "Reference-model runs: 2" in text

    # two settings of one defense (seeds) would be mixed into one cell: refused, named
    _write_reference_run(refs / "none_s1", "none", strength=2.5, seed=1)
    reference = collect_results(sorted(refs.glob("*/results.json")))
    with pytest.raises(ValueError, match="defense none: 2 reference runs"):
        privacy_utility_frame(collect_results(comparison), reference_results=reference)
