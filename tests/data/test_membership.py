"""Membership splits and manifests: sizes, determinism, disjointness, duplicates, CSV."""

from __future__ import annotations

import functools
import logging
import shutil
from pathlib import Path

import pytest
from PIL import Image

from miabench.data.aligned import AlignedDataset
from miabench.data.datamodule import MembershipDataModule
from miabench.data.membership import (
    DuplicateContentError,
    Manifest,
    ManifestRow,
    SampleRecord,
    make_split,
)
from tests.conftest import write_aligned


def pool(phase: str, n: int, contents: list[int] | None = None) -> list[SampleRecord]:
    """``n`` records; ``contents[i]`` is the content of sample i (equal = duplicate)."""
    contents = list(range(n)) if contents is None else contents
    return [
        SampleRecord(f"{phase}/{i:03d}", f"/d/{phase}/{i:03d}", f"h{c}")
        for i, c in enumerate(contents)
    ]


def hashes(manifest: Manifest, role: str) -> set[str]:
    return {r.sha256 for r in manifest.records(role)}


def test_split_sizes_and_disjoint_from_one_pool() -> None:
    records = pool("train", 100)
    manifest = make_split(records, records, 30, 40, seed=0, n_validation=10)
    ids = {role: set(manifest.ids(role)) for role in ("member", "nonmember", "validation")}
    assert [len(ids[r]) for r in ("member", "nonmember", "validation")] == [30, 40, 10]
    assert not ids["member"] & ids["nonmember"]
    assert not ids["validation"] & (ids["member"] | ids["nonmember"])
    manifest.check_disjoint()


def test_split_is_deterministic_per_seed() -> None:
    records = pool("train", 100)
    first = make_split(records, records, 20, 20, seed=3)
    assert make_split(records, records, 20, 20, seed=3) == first
    # The draw must not depend on the order the dataset listed its files in.
    assert make_split(records[::-1], records[::-1], 20, 20, seed=3) == first
    assert make_split(records, records, 20, 20, seed=4).ids("member") != first.ids("member")


def test_separate_pools_none_takes_everything() -> None:
    train, test = pool("train", 50), pool("test", 20, contents=list(range(100, 120)))
    manifest = make_split(train, test, None, None, seed=0, n_validation=5)
    assert len(manifest.ids("member")) == 45
    assert len(manifest.ids("validation")) == 5
    assert len(manifest.ids("nonmember")) == 20


def test_same_pool_needs_member_count() -> None:
    records = pool("train", 10)
    with pytest.raises(ValueError, match="n_members"):
        make_split(records, records, None, 5, seed=0)


@pytest.mark.parametrize(
    ("n_members", "n_nonmembers", "n_validation", "message"),
    [
        (8, 1, 3, "asked for 8 members \\+ 3 validation"),
        (6, 5, 0, "asked for 5 non-members, but only 4"),
    ],
)
def test_too_few_samples_says_how_many(
    n_members: int, n_nonmembers: int, n_validation: int, message: str
) -> None:
    records = pool("train", 10)
    with pytest.raises(ValueError, match=message):
        make_split(records, records, n_members, n_nonmembers, seed=0, n_validation=n_validation)


def test_duplicate_groups_stay_on_one_side() -> None:
    # 60 samples, 20 of which are copies of samples 0..9 (two copies each of 0..9).
    contents = list(range(40)) + [i % 10 for i in range(20)]
    records = pool("train", 60, contents)
    for seed in range(10):
        manifest = make_split(records, records, 20, 20, seed=seed, n_validation=5)
        assert not hashes(manifest, "member") & hashes(manifest, "nonmember")
        assert not hashes(manifest, "validation") & (
            hashes(manifest, "member") | hashes(manifest, "nonmember")
        )
        assert (len(manifest.ids("member")), len(manifest.ids("nonmember"))) == (20, 20)


def test_nonmember_copies_of_members_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    train = pool("train", 30)
    # test/000..004 duplicate train/000..004 (e.g. the same image in both published splits).
    test = pool("test", 15, contents=[0, 1, 2, 3, 4] + list(range(100, 110)))
    with caplog.at_level(logging.INFO, logger="miabench.data.membership"):
        manifest = make_split(train, test, None, None, seed=0)
    assert manifest.ids("nonmember") == [f"test/{i:03d}" for i in range(5, 15)]
    assert "dropped 5 non-member" in caplog.text


def test_check_disjoint_refuses_shared_content() -> None:
    manifest = Manifest(
        [
            ManifestRow("train/a.png", "a", "same", "member"),
            ManifestRow("train/b.png", "b", "other", "member"),
            ManifestRow("test/c.png", "c", "same", "nonmember"),
        ]
    )
    with pytest.raises(DuplicateContentError, match="train/a.png.*test/c.png"):
        manifest.check_disjoint()
    assert issubclass(DuplicateContentError, ValueError)


def test_check_disjoint_refuses_id_in_two_roles() -> None:
    manifest = Manifest(
        [
            ManifestRow("train/a.png", "a", "h1", "member"),
            ManifestRow("train/a.png", "a", "h1", "validation"),
        ]
    )
    with pytest.raises(DuplicateContentError, match="train/a.png"):
        manifest.check_disjoint()


def test_manifest_csv_round_trip(tmp_path: Path) -> None:
    records = pool("train", 30)
    manifest = make_split(records, records, 10, 10, seed=1, n_validation=2)
    path = manifest.to_csv(tmp_path / "sub" / "manifest.csv")
    loaded = Manifest.from_csv(path)
    assert loaded == manifest
    assert loaded.sha256() == manifest.sha256()
    assert loaded.records("validation") == manifest.records("validation")
    assert not list(path.parent.glob("*.tmp"))


def test_manifest_hash_ignores_paths_and_row_order_but_not_roles() -> None:
    rows = [ManifestRow(f"train/{i}", f"/x/{i}", f"h{i}", "member") for i in range(3)]
    rows.append(ManifestRow("train/9", "/x/9", "h9", "nonmember"))
    base = Manifest(rows).sha256()
    assert Manifest(rows[::-1]).sha256() == base
    moved = [ManifestRow(r.sample_id, "/elsewhere", r.sha256, r.role) for r in rows]
    assert Manifest(moved).sha256() == base
    swapped = rows[:3] + [ManifestRow("train/9", "/x/9", "h9", "validation")]
    assert Manifest(swapped).sha256() != base


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sample_id,path,role\ntrain/a,a,member\n", "lacks column.*sha256"),
        ("sample_id,path,sha256,role\ntrain/a,a,h,memeber\n", "line 2: role 'memeber'"),
    ],
)
def test_malformed_manifest_names_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        Manifest.from_csv(path)
    assert str(path) in str(info.value)


def test_make_split_avoids_duplicated_images_on_disk(tmp_path: Path) -> None:
    root = tmp_path / "dup"
    paths = write_aligned(root, "train", 12)
    # Same pixels under another name, one re-encoded in another format: hashes must match.
    shutil.copy(paths[0], root / "train" / "copy_a.png")
    Image.open(paths[1]).save(root / "train" / "copy_b.bmp")
    records = AlignedDataset(root, "train").records()
    assert len({r.sha256 for r in records}) == 12
    for seed in range(5):
        manifest = make_split(records, records, 6, 7, seed=seed)
        assert not hashes(manifest, "member") & hashes(manifest, "nonmember")


def datamodule(root: Path, manifest_path: Path, **kwargs) -> MembershipDataModule:
    factory = functools.partial(AlignedDataset, root=root, load_size=36, crop_size=32)
    settings = {"n_members": 16, "n_nonmembers": 16, "n_validation": 4, "seed": 0}
    settings.update(kwargs)
    return MembershipDataModule(
        factory, batch_size=4, eval_batch_size=8, manifest_path=manifest_path, **settings
    )


def test_datamodule_serves_roles_and_reuses_manifest(aligned_root: Path, tmp_path: Path) -> None:
    calls = []
    path = tmp_path / "splits" / "m.csv"
    dm = datamodule(aligned_root, path, prepare=lambda: calls.append(1))
    dm.prepare_data()
    dm.setup()
    dm.setup()  # Lightning calls setup again inside fit; must be a no-op.
    assert calls == [1] and path.exists()
    batch = next(iter(dm.train_dataloader()))
    assert batch["input"].shape == (4, 3, 32, 32) and len(batch["sample_id"]) == 4
    seen = {
        role: [s for b in loader for s in b["sample_id"]]
        for role, loader in (
            ("member", dm.member_dataloader()),
            ("nonmember", dm.nonmember_dataloader()),
            ("validation", dm.validation_dataloader()),
        )
    }
    assert {role: len(ids) for role, ids in seen.items()} == {
        "member": 16,
        "nonmember": 16,
        "validation": 4,
    }
    assert seen["member"] == dm.manifest.ids("member")

    # Another seed would draw another split, but an existing manifest is reused as is.
    again = datamodule(aligned_root, path, seed=5)
    again.setup()
    assert again.manifest == dm.manifest


def test_datamodule_members_from_train_nonmembers_from_test(
    aligned_root: Path, tmp_path: Path
) -> None:
    dm = datamodule(
        aligned_root,
        tmp_path / "m.csv",
        nonmembers_from="test",
        n_members=None,
        n_nonmembers=None,
        n_validation=0,
    )
    dm.setup()
    assert len(dm.manifest.ids("member")) == 48
    assert all(s.startswith("test/") for s in dm.manifest.ids("nonmember"))


def test_datamodule_refuses_stale_manifest(aligned_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    dm = datamodule(aligned_root, path)
    dm.setup()
    with pytest.raises(ValueError, match="16 member samples, but 10 were requested"):
        datamodule(aligned_root, path, n_members=10).setup()
    changed = dm.manifest.ids("nonmember")[0]
    Image.new("RGB", (64, 32)).save(aligned_root / changed)
    with pytest.raises(ValueError, match=f"does not match the data.*{changed}"):
        datamodule(aligned_root, path).setup()


# --------------------------------------------------------------------------- populations


def test_datamodule_serves_a_population_column(aligned_root: Path, tmp_path: Path) -> None:
    settings = {"n_models": 3, "pkeep": 0.5, "seed": 0}
    columns = []
    for model in range(4):
        dm = datamodule(
            aligned_root,
            tmp_path / f"m{model}.csv",
            population={**settings, "model": model},
        )
        dm.setup()
        assert dm.population is not None and dm.population_path.exists()
        columns.append(dm.manifest)
        # the loaders serve the model's column: members IN, non-members OUT
        served = [s for b in dm.member_dataloader() for s in b["sample_id"]]
        assert served == dm.manifest.ids("member")
    # every model shares one population (one file) and its validation samples
    assert len({str(p) for p in tmp_path.glob("population-*.csv")}) == 1
    assert all(c.ids("validation") == columns[0].ids("validation") for c in columns)
    population = set(columns[0].ids("member")) | set(columns[0].ids("nonmember"))
    assert len(population) == 32 and all(
        set(c.ids("member")) | set(c.ids("nonmember")) == population for c in columns
    )
    assert len({tuple(c.ids("member")) for c in columns}) == 4
    # every model trains on half the population; references 1 and 2 on complementary halves
    assert all(len(c.ids("member")) == 16 for c in columns)
    assert set(columns[1].ids("member")) == set(columns[2].ids("nonmember"))

    # the stored column is reused, and refused when the data changed under it
    again = datamodule(aligned_root, tmp_path / "m1.csv", population={**settings, "model": 1})
    again.setup()
    assert again.manifest == columns[1]
    Image.new("RGB", (64, 32)).save(aligned_root / columns[1].ids("member")[0])
    with pytest.raises(ValueError, match="differs from model 1's column"):
        datamodule(aligned_root, tmp_path / "m1.csv", population={**settings, "model": 1}).setup()


def test_datamodule_population_settings_are_checked(aligned_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs reference.n_models > 0"):
        datamodule(aligned_root, tmp_path / "m.csv", population={"n_models": 0, "model": 2})
    off = datamodule(aligned_root, tmp_path / "m.csv", population={"n_models": 0, "model": 0})
    off.setup()
    assert off.population is None and len(off.manifest.ids("member")) == 16
    split_phases = datamodule(
        aligned_root,
        tmp_path / "p.csv",
        nonmembers_from="test",
        n_members=20,
        n_nonmembers=8,
        population={"n_models": 2, "model": 0},
    )
    with pytest.raises(ValueError, match="drawn from one\nphase|drawn from one phase"):
        split_phases.setup()
