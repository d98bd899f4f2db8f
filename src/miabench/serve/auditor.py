"""One served model: its victim and attack prepared as the attack stage prepared them, and
uploaded images turned into the samples the victim sees and scored.

Loading an attack folder (:meth:`Auditor.load`), in named steps:

1. the run's config, composed from the overrides its ``results.json`` recorded;
2. the victim the run attacked (``run.victim_dir``), accepted only if its ``key.json`` is the
   recorded victim key and the rebuilt config gives the same victim, data, defense, trainer
   and seed parts (so the config really is the run's), and its weights pass their checksum;
3. the data module with the run's split (manifest hash checked), and the attack built from
   the config; a trainable attack (MINT) is refitted on the run's calibration half, the same
   samples in the same order as the attack stage (:func:`~miabench.pipeline.halves.split_halves`)
   (:meth:`Auditor._refit`);
4. the calibration of scores (:mod:`miabench.serve.calibration`) from ``scores.csv``, and the
   calibration half's two histograms, drawn once (:class:`~miabench.serve.plots.ScoreHistograms`);
5. a check that recorded samples, scored again through this path, give their recorded
   scores (a model that does not reproduce its run is refused, not served with wrong numbers).

A refitted auditor reproduces its run only if it is trained with the same torch thread
count: the float sums of its training (matrix products, BatchNorm statistics) are split
across threads, and the embedded MINT auditor (30 epochs) trained with 2 threads instead of
the sweep's 1 scores recorded samples up to 0.0099 apart (3e-8 with 1 thread). So the refit
tries :data:`REFIT_THREADS` until the check of step 5 holds. Where none does (a run trained
on a GPU, or with another thread count), the refitted auditor is served with its own
calibration: the calibration half is scored again by it, and calibration, percentiles and
decisions use those scores, so that they describe the scorer actually served; the report says
so, with how far its calibration scores are from the recorded ones. Attacks that learn
nothing keep the strict check.

The server never trains a victim: a missing or damaged victim is an error naming the folder.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import default_collate

from miabench.data.aligned import AlignedDataset
from miabench.pipeline.attack import _attacker_view, _fit_batches, _prepare_attacks
from miabench.pipeline.halves import ROLES, split_halves
from miabench.pipeline.keys import victim_key
from miabench.pipeline.train import TrainedVictim, locate_victim
from miabench.results.runs import recorded_overrides
from miabench.serve.calibration import ScoreCalibration
from miabench.serve.models import ModelEntry, ModelError
from miabench.serve.plots import ScoreHistograms
from miabench.serve.uploads import Upload, UploadError, decode_image
from miabench.utils.device import resolve_device
from miabench.utils.hashing import sha256_file
from miabench.utils.io import check_torch_archive, read_json, read_verified

log = logging.getLogger(__name__)

#: parts of a victim's key.json that the rebuilt config must reproduce (the code version
#: may have moved on since the run; the recorded key names the victim itself)
KEY_PARTS = ("victim", "data", "defense", "trainer", "seed", "manifest_sha256")

Composer = Callable[[Sequence[str]], DictConfig]

#: torch intra-op thread counts a trainable attack is refitted with, in this order, until it
#: reproduces its recorded scores: 1 (the project's sweeps run with OMP_NUM_THREADS=1), then
#: the process's own count (None: a run made with the defaults on this machine)
REFIT_THREADS: tuple[int | None, ...] = (1, None)

#: fewest held-out calibration samples per class (member, non-member) a learning attack's
#: calibration uses; with fewer, the test half calibrates (see Auditor._calibration_rows)
MIN_CALIBRATION_PER_CLASS = 20

#: torch's thread count is one per process: fits that change it take turns
_THREADS_LOCK = threading.Lock()


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the previous count.

    The count is process-wide: audits of other models running meanwhile use it too (only
    their speed changes; a forward pass in eval mode differs by ~1e-7 across thread counts).
    """
    with _THREADS_LOCK:
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def _relative_to_root(path: str, root: Path) -> Path:
    """A path a results.json records, resolved against the outputs root when relative."""
    candidate = Path(path)
    return candidate if candidate.is_absolute() else root / candidate


class Auditor:
    """A loaded model: victim, attack and calibration of one attack folder.

    Args:
        entry: the attack folder (from :func:`~miabench.serve.models.find_models`).
        root: ``paths.root_dir`` (relative paths of the run are read against it).
        compose: overrides → the run's config (``run_attack``), with the serve's root.
        settings: the ``serve`` config block (calibrator, fprs, bootstrap, device, ...).
    """

    def __init__(self, entry: ModelEntry, root: Path, compose: Composer, settings: Any) -> None:
        self.entry = entry
        self.root = Path(root)
        self.compose = compose
        self.settings = settings
        self._lock = threading.Lock()  # one forward at a time: layer taps are per module
        self.loaded = False
        self.weights_sha256: str | None = None
        self.score_check: dict[str, Any] | None = None
        #: how a trainable attack was refitted (None for attacks that learn nothing)
        self.refit: dict[str, Any] | None = None

    # -- loading ---------------------------------------------------------------------------
    def load(self) -> Auditor:
        """Prepare the model (idempotent; thread-safe). Raises :class:`ModelError`."""
        with self._lock:
            if not self.loaded:
                self._load()
                self.loaded = True
        return self

    def _load(self) -> None:
        entry, run = self.entry, self.entry.run
        log.info("[1/5] %s: the run's config from its recorded overrides", entry.id)
        overrides = [
            o for o in recorded_overrides(run) or [] if not o.startswith("paths.root_dir=")
        ]
        self.cfg = cfg = self.compose(overrides)
        self.device = resolve_device(str(self.settings.device))

        log.info("[2/5] %s: the attacked victim", entry.id)
        directory = _relative_to_root(run["victim_dir"], self.root)
        key_path = directory / "key.json"
        if not key_path.is_file():
            raise ModelError(f"{entry.folder}: its victim {directory} is not in the cache")
        key = read_json(key_path)
        if key.get("key") != run.get("victim_key"):
            raise ModelError(
                f"{key_path}: key {key.get('key')} is not the run's victim {run.get('victim_key')}"
            )
        located = locate_victim(cfg)
        manifest = located.datamodule.manifest
        rebuilt = victim_key(cfg, manifest.sha256())
        differ = [p for p in KEY_PARTS if rebuilt.get(p) != key.get(p)]
        if differ:
            raise ModelError(
                f"{entry.folder}: the config rebuilt from its recorded overrides {overrides} "
                f"differs from the victim's {key_path} in {differ}"
            )
        self.victim = TrainedVictim(directory, key, located.datamodule)
        check_torch_archive(self.victim.weights, fix=self.victim.retrain_hint)
        self.weights_sha256 = sha256_file(self.victim.weights)
        self.model = self.victim.load(cfg).to(self.device).eval()

        log.info("[3/5] %s: attack %s", entry.id, entry.attack)
        self.attack = instantiate(cfg.attack[entry.attack], name=entry.attack)
        self.view = _attacker_view(cfg)
        _prepare_attacks([self.attack], self.model, self.device)
        scores = pd.read_csv(read_verified(entry.folder / "scores.csv"))
        column = f"{entry.attack}.score"
        if column not in scores:
            raise ModelError(f"{entry.folder / 'scores.csv'}: no column {column!r}")
        if self.attack.trainable:
            scores = self._refit(scores, column)

        log.info("[4/5] %s: calibration of the scores", entry.id)
        calibration, self.calibrated_on = self._calibration_rows(scores, column)
        self.calibration = ScoreCalibration(
            calibration[column].to_numpy(),
            calibration["label"].to_numpy(),
            instantiate(self.settings.calibrator),
            fprs=tuple(self.settings.fprs),
            n_bootstrap=int(self.settings.bootstrap),
            level=float(self.settings.ci_level),
            seed=int(cfg.seed),
        )
        self.histograms = ScoreHistograms(self.calibration.members, self.calibration.nonmembers)
        dm = self.victim.datamodule
        self.dataset = dm.dataset(phase=dm.members_from, augment=False)
        self.collate = dm.collate_fn or default_collate
        self.roles = {row.sha256: row.role for row in manifest.rows}
        derive = (self.settings.get("derived_pairs") or {}).get(cfg.data.name)
        self.derive = instantiate(derive) if derive is not None else None

        log.info("[5/5] %s: recorded samples scored again", entry.id)
        if self.refit is None:  # a refitted attack was checked while it was fitted
            self._check_scores(scores, column)

    def _refit(self, scores: pd.DataFrame, column: str) -> pd.DataFrame:
        """Fit a trainable attack on the run's calibration half, as the attack stage did.

        Returns the scores to calibrate on: ``scores`` itself when the refit reproduces the
        recorded samples (within ``serve.check_tolerance``) with one of :data:`REFIT_THREADS`;
        otherwise ``scores`` with the calibration half's column replaced by the refitted
        auditor's own scores (see the module's docstring). ``self.refit`` records which.

        Raises:
            ModelError: the run's config draws another calibration half than ``scores.csv``.
        """
        utility = pd.read_csv(read_verified(self.entry.folder / "utility.csv"))
        halves = split_halves(self.cfg, utility)
        recorded = scores.set_index("sample_id")["split"]
        drawn = halves.table.set_index("sample_id")["split"]
        if not drawn.reindex(recorded.index).equals(recorded):
            raise ModelError(
                f"{self.entry.folder / 'scores.csv'}: its calibration half is not the one the "
                "run's config draws"
            )
        batches = _fit_batches(self.model, self.victim, self.device, halves.calibration, self.view)
        tolerance = float(self.settings.check_tolerance)
        counts = [torch.get_num_threads() if t is None else t for t in REFIT_THREADS]
        tries: list[dict[str, Any]] = []
        for threads in dict.fromkeys(counts):
            with torch_threads(threads):
                self.attack.fit(batches)
            self.score_check = self._recorded_difference(scores, column)
            tries.append({"torch_threads": threads, **(self.score_check or {})})
            if self.score_check is None:  # serve.check_samples = 0: nothing to compare
                self.refit = {"reproduced": None, "torch_threads": threads, "tries": tries}
                return scores
            if self.score_check["max_abs_difference"] <= tolerance:
                log.info("%s: the refit reproduces the run (%s)", self.entry.id, tries[-1])
                self.refit = {"reproduced": True, "torch_threads": threads, "tries": tries}
                return scores
        # none reproduces the run: serve the closest refit, with its own calibration
        best = min(tries, key=lambda t: t["max_abs_difference"])
        if best is not tries[-1]:
            with torch_threads(best["torch_threads"]):
                self.attack.fit(batches)
        log.warning(
            "%s: no refit reproduces the recorded scores within %g (%s); the calibration half "
            "is scored again by the closest one (%d threads)",
            self.entry.id,
            tolerance,
            tries,
            best["torch_threads"],
        )
        calibration = (scores["split"] == "calibration").to_numpy()
        scores, difference = self._rescore(scores, column, calibration)
        self.refit = {
            "reproduced": False,
            "torch_threads": best["torch_threads"],
            "tries": tries,
            "calibration_rescored": int(calibration.sum()),
            "calibration_max_abs_difference": float(np.nanmax(difference)),
            "calibration_mean_abs_difference": float(np.nanmean(difference)),
        }
        return scores

    def _rescore(
        self, scores: pd.DataFrame, column: str, rows: np.ndarray
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """``scores`` with the ``rows`` (a mask) scored again by the attack served here, and
        how far each moved from the recorded score."""
        ids = scores.loc[rows, "sample_id"]
        roles = scores.loc[rows, "role"]
        again = self._score_ids({r: ids[roles == r].tolist() for r in ROLES})
        if set(again) != set(ids):
            raise ModelError(f"{self.entry.folder}: the samples scored again are not scores.csv's")
        fresh = ids.map(again).to_numpy(dtype=np.float64)
        difference = np.abs(fresh - scores.loc[rows, column].to_numpy(dtype=np.float64))
        scores = scores.copy()
        scores.loc[rows, column] = fresh
        return scores, difference

    def _calibration_rows(self, scores: pd.DataFrame, column: str) -> tuple[pd.DataFrame, str]:
        """The rows that calibrate the probabilities, and what they are (said on every page).

        The run's calibration half; for an attack that learned from part of it (MINT's
        auditor, trained on ``n_train`` of its samples), the rest only: a score of a sample
        the auditor trained on is in-sample, higher for members than a query's would be, and
        calibrating on it would make every probability, percentile and threshold
        overconfident. Where fewer than :data:`MIN_CALIBRATION_PER_CLASS` of a class remain,
        the test half (which no attack learns from), rescored by a refit that does not
        reproduce the run.
        """
        calibration = scores["split"] == "calibration"
        if not calibration.any():
            return scores, "every scored sample (the run has no calibration half)"
        fitted = scores["sample_id"].isin(self.attack.fitted_on)
        if not fitted[calibration].any():
            return scores[calibration], "the run's calibration half"
        held = calibration & ~fitted
        counts = scores.loc[held, "label"].value_counts()
        n = int(fitted[calibration].sum())
        if min(counts.get(0, 0), counts.get(1, 0)) >= MIN_CALIBRATION_PER_CLASS:
            return scores[held], (
                f"the run's calibration half less the {n} samples the auditor learned from"
            )
        test = (scores["split"] == "test").to_numpy()
        if self.refit is not None and self.refit["reproduced"] is False:
            scores, _ = self._rescore(scores, column, test)
        return scores[test], (
            f"the run's test half (the auditor learned from {n} of the calibration half's "
            f"samples, leaving fewer than {MIN_CALIBRATION_PER_CLASS} of a class)"
        )

    def _score_ids(self, ids_by_role: dict[str, list[str]]) -> dict[str, float]:
        """Scores of the split's samples ``ids_by_role`` (role → ids), by sample id."""
        out: dict[str, float] = {}
        for role, ids in ids_by_role.items():
            if not ids:
                continue
            for batch in self.victim.datamodule.role_dataloader(role, ids):
                scores = self._score_batch(batch)
                out.update(zip(batch["sample_id"], (float(v) for v in scores), strict=True))
        return out

    def _recorded_difference(self, scores: pd.DataFrame, column: str) -> dict[str, Any] | None:
        """Score ``serve.check_samples`` recorded samples again (half per role): how far
        from ``scores.csv`` (None when the check is off)."""
        n = int(self.settings.check_samples)
        if n <= 0:
            return None
        rows = pd.concat([scores[scores["role"] == r].head(max(1, n // 2)) for r in ROLES])
        ids = {role: rows.loc[rows["role"] == role, "sample_id"].tolist() for role in ROLES}
        again = self._score_ids(ids)
        fresh = rows["sample_id"].map(again).to_numpy(dtype=np.float64)
        worst = float(np.max(np.abs(fresh - rows[column].to_numpy(dtype=np.float64))))
        return {"samples": len(rows), "max_abs_difference": worst}

    def _check_scores(self, scores: pd.DataFrame, column: str) -> None:
        """Score a few recorded samples again and refuse the model if they differ."""
        self.score_check = self._recorded_difference(scores, column)
        if self.score_check is None:
            return
        worst, checked = self.score_check["max_abs_difference"], self.score_check["samples"]
        tolerance = float(self.settings.check_tolerance)
        if not worst <= tolerance:
            raise ModelError(
                f"{self.entry.folder}: {checked} recorded samples scored again differ from "
                f"scores.csv by up to {worst:.3g} (> serve.check_tolerance {tolerance:g})"
            )

    def calibration_summary(self) -> dict[str, Any]:
        """How the probabilities were calibrated, and on whose scores: the run's recorded
        ones, or a refitted auditor's own (:meth:`_refit`)."""
        own = self.refit is not None and self.refit["reproduced"] is False
        return {
            **self.calibration.summary(),
            "calibrated_on": self.calibrated_on,
            "scores": "rescored by the refitted auditor" if own else "recorded (scores.csv)",
        }

    def summary(self) -> dict[str, Any]:
        """The model's summary (:meth:`ModelEntry.summary`), with how a trainable attack was
        refitted once the model is loaded."""
        return {**self.entry.summary(self.weights_sha256), "refit": self.refit}

    # -- scoring -----------------------------------------------------------------------------
    @torch.no_grad()
    def _score_batch(self, batch: dict[str, Any]) -> np.ndarray:
        signals = next(iter(self.model.iter_signals([batch], device=self.device, desc="audit")))
        if self.view is not None:
            signals = self.view(signals)
        return self.attack.score(signals)["score"].detach().double().cpu().numpy()

    def sample(self, pixels: np.ndarray, name: str) -> tuple[dict[str, Any], str]:
        """The sample the victim sees for decoded upload pixels, and its content hash.

        Paired (aligned) datasets take the pair in the dataset's layout (A|B side by side,
        width twice the height) or, where the input is derived from the photo
        (``serve.derived_pairs``), the photo alone (square).

        Raises:
            UploadError: 422 when the image fits neither form, naming the file.
        """
        if isinstance(self.dataset, AlignedDataset):
            height, width = pixels.shape[:2]
            if width == 2 * height:
                pair = pixels
            elif width == height and self.derive is not None:
                pair = self.derive(pixels, image_size=int(self.cfg.data.image_size))
            else:
                photo = " or the photo alone (square)" if self.derive is not None else ""
                raise UploadError(
                    f"{name}: {width}x{height} is not this dataset's layout: A|B side by side "
                    f"(width = 2 x height){photo}"
                )
            pixels = pair
        if not hasattr(self.dataset, "item_from_pixels"):
            raise UploadError(
                f"{type(self.dataset).__name__} samples cannot be built from an uploaded image"
            )
        return self.dataset.item_from_pixels(pixels, "upload"), self.dataset.content_sha256(pixels)

    def audit(self, uploads: Sequence[Upload]) -> list[dict[str, Any]]:
        """Score uploaded images; one report per image (see ``POST /api/audit``).

        Raises:
            UploadError: any image that cannot be decoded or is not in the dataset's layout
                (the whole request is refused, naming the file).
        """
        self.load()
        max_pixels = int(self.settings.max_pixels)
        prepared = []
        for upload in uploads:
            pixels = decode_image(upload, max_pixels)
            item, content = self.sample(pixels, upload.filename)
            prepared.append((upload, item, content))
        reports: list[dict[str, Any]] = []
        size = max(1, int(self.settings.batch_size))
        for start in range(0, len(prepared), size):
            chunk = prepared[start : start + size]
            with self._lock:
                scores = self._score_batch(self.collate([item for _, item, _ in chunk]))
            for (upload, item, content), score in zip(chunk, scores, strict=True):
                report = {
                    "filename": upload.filename,
                    "sha256": hashlib.sha256(upload.data).hexdigest(),
                    "score": float(score),
                    **self.calibration.describe(float(score)),
                }
                if bool(self.settings.reveal_ground_truth):
                    report["ground_truth"] = self.roles.get(content, "not in the audited split")
                report["_item"] = item
                reports.append(report)
        return reports
