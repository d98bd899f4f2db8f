"""Declared membership: member/non-member lists, the published split, and their record."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hydra.errors import InstantiationException

from miabench.data.membership import DuplicateContentError, Manifest
from miabench.pipeline.common import build_datamodule
from miabench.pipeline.keys import split_key
from miabench.results.table import _data_label
from tests.conftest import compose_cfg
from tests.pipeline.test_end_to_end import tiny_overrides


def _lists(tmp_path: Path, members: str, nonmembers: str) -> list[str]:
    (tmp_path / "members.txt").write_text(members)
    (tmp_path / "nonmembers.txt").write_text(nonmembers)
    return [
        f"split.members_list={tmp_path / 'members.txt'}",
        f"split.nonmembers_list={tmp_path / 'nonmembers.txt'}",
    ]


def _setup(aligned_root: Path, tmp_path: Path, *extra: str):
    cfg = compose_cfg("train_victim", tiny_overrides(aligned_root, tmp_path / "out", *extra))
    dm = build_datamodule(cfg)
    dm.setup()
    return cfg, dm


def test_lists_declare_the_split_and_it_is_recorded(aligned_root: Path, tmp_path: Path) -> None:
    lists = _lists(
        tmp_path,
        "# members\ntrain/0000.png\n./train/0001.png\n\ntrain/0002.png\n",
        "test/0000.png\ntest/0001.png\n",
    )
    cfg, dm = _setup(aligned_root, tmp_path, *lists, "split.nonmembers_from=test")
    manifest = dm.manifest
    assert manifest.membership == "declared"
    assert len(manifest.ids("member")) == 3  # the lists, not split.n_members=8
    assert len(manifest.ids("nonmember")) == 2
    assert len(dm.member_dataloader().dataset) == 3
    # the manifest file says so, and reads back the same
    assert Manifest.from_csv(dm.manifest_path).membership == "declared"
    # the lists' content keys the split; editing a list moves it
    before = split_key(cfg)
    (tmp_path / "nonmembers.txt").write_text("test/0002.png\n")
    assert split_key(cfg) != before


@pytest.mark.parametrize(
    ("members", "nonmembers", "error", "message"),
    [
        ("train/0000.png\n", "# nothing\n\n", ValueError, "nonmembers_list=.*lists no sample"),
        ("train/0000.png\ntrain/9999.png\n", "train/0005.png\n", ValueError, "line 2: 'train/9999"),
        ("train/0001.png\ntrain/0001.png\n", "train/0005.png\n", ValueError, "line 2.*first on"),
        ("train/0000.png\n", "train/0000.png\n", DuplicateContentError, "member .*line 1"),
        ("train/0000.png\n", "train/0047.png\n", DuplicateContentError, "same content.*line 1"),
    ],
)
def test_bad_lists_are_refused_naming_file_and_line(
    aligned_root: Path, tmp_path: Path, members, nonmembers, error, message
) -> None:
    # train/0047.png: a copy of train/0000.png's content under another name
    shutil.copy(aligned_root / "train" / "0000.png", aligned_root / "train" / "0047.png")
    with pytest.raises(error, match=message):
        _setup(aligned_root, tmp_path, *_lists(tmp_path, members, nonmembers))


def test_missing_or_single_list_is_refused(aligned_root: Path, tmp_path: Path) -> None:
    absent = tmp_path / "absent.txt"
    with pytest.raises(FileNotFoundError, match=r"split.members_list=.*absent.txt: no such"):
        lists = _lists(tmp_path, "", "train/0001.png\n")
        _setup(aligned_root, tmp_path, f"split.members_list={absent}", lists[1])
    # raised by the data module's constructor, so Hydra's instantiate wraps it
    with pytest.raises(InstantiationException, match="members_list is set but .*nonmembers_list"):
        _setup(aligned_root, tmp_path, f"split.members_list={tmp_path / 'members.txt'}")


def test_paper_split_is_declared_and_a_draw_is_not(aligned_root: Path, tmp_path: Path) -> None:
    _, paper = _setup(
        aligned_root, tmp_path, "split=paper", "split.n_members=null", "split.n_nonmembers=null"
    )
    assert paper.manifest.membership == "declared"
    assert len(paper.manifest.ids("member")) == 48
    assert len(paper.manifest.ids("nonmember")) == 8
    # reused from the cache (the manifest file): still declared
    _, again = _setup(
        aligned_root, tmp_path, "split=paper", "split.n_members=null", "split.n_nonmembers=null"
    )
    assert again.manifest.membership == "declared"
    _, drawn = _setup(aligned_root, tmp_path)
    assert drawn.manifest.membership == "drawn"


def test_table_data_column_says_declared() -> None:
    run = {"dataset": "facades", "data_name": "facades", "data_root": "/d"}
    assert _data_label(run) == "facades (/d)"
    assert _data_label({**run, "membership": "declared"}) == "facades (/d; membership declared)"
