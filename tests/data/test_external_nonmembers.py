"""External non-member face sets (MINT's published protocol): identity folders and image lists
read through ``data.nonmembers``, the member side unchanged, clear errors on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from miabench.data.embedded.proxy_faces import shift_image
from miabench.data.external_faces import external_entries
from miabench.data.faces import ImageFolderFaces, partition_identities
from tests.data.test_faces import write_identity_folders


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16, 3), value, dtype=np.uint8)).save(path)


def _kwargs(root: Path, **extra: object) -> dict:
    return {
        "root": root,
        "n_member_identities": 3,
        "n_nonmember_identities": 2,
        "identity_seed": 0,
        "image_size": 16,
        **extra,
    }


def test_folder_and_list_sets_replace_the_nonmember_side(tmp_path: Path) -> None:
    write_identity_folders(tmp_path / "glint", n_ids=5, per_id=3)
    for identity, k in (("anna", 0), ("anna", 1), ("bo", 0)):
        _png(tmp_path / "ijbc" / identity / f"{k}.png", 10 * k + 1)
    for name in ("a.png", "sub/b.png", "c.png"):
        _png(tmp_path / "fddb" / name, 200)
    (tmp_path / "fddb" / "images.txt").write_text(
        "# FDDB-like list: path [identity]\na.png\nsub/b.png\nc.png face_c\n"
    )
    sets = [
        {"name": "ijbc", "root": str(tmp_path / "ijbc")},
        {"name": "fddb", "root": str(tmp_path / "fddb"), "layout": "list", "list": "images.txt"},
    ]
    plain_members = ImageFolderFaces(phase="members", **_kwargs(tmp_path / "glint"))
    members = ImageFolderFaces(phase="members", **_kwargs(tmp_path / "glint", nonmembers=sets))
    outside = ImageFolderFaces(phase="nonmembers", **_kwargs(tmp_path / "glint", nonmembers=sets))

    # the member side (and so the victim's training set) is the control's
    assert [r.sample_id for r in members.records()] == [
        r.sample_id for r in plain_members.records()
    ]
    ids = [r.sample_id for r in outside.records()]
    assert ids == sorted(
        [
            "anna@ijbc/0.png",
            "anna@ijbc/1.png",
            "bo@ijbc/0.png",
            "a@fddb/a.png",
            "sub_b@fddb/sub/b.png",  # no identity label: each image is its own identity
            "face_c@fddb/c.png",
        ]
    )
    item = outside[ids.index("anna@ijbc/1.png")]
    assert item["target"].item() == -1  # no class of the victim's head
    assert item["input"].shape == (3, 16, 16)
    assert abs(item["input"].mean().item() - 11 / 255) < 1e-6
    # identity indices of external identities do not collide with the dataset's
    assert len({outside[i]["identity"].item() for i in range(len(outside))}) == 5
    assert {r.path for r in outside.records()} >= {str(tmp_path / "fddb" / "sub" / "b.png")}


def test_a_released_models_members_can_be_every_identity() -> None:
    names = [f"id{i}" for i in range(6)]
    members, nonmembers = partition_identities(names, 6, 0, seed=0)
    assert members == names and nonmembers == []
    with pytest.raises(ValueError, match=">= 0 non-member"):
        partition_identities(names, 3, -1, seed=0)


def test_external_set_errors_name_the_key_and_file(tmp_path: Path) -> None:
    _png(tmp_path / "ext" / "x" / "0.png", 5)
    with pytest.raises(ValueError, match=r"data.nonmembers\[0\]: unknown key"):
        external_entries([{"name": "e", "root": str(tmp_path / "ext"), "path": "x"}])
    with pytest.raises(ValueError, match=r"data.nonmembers\[0\]: set data.nonmembers\[0\].root"):
        external_entries([{"name": "e"}])
    with pytest.raises(FileNotFoundError, match=r"data.nonmembers\[0\].root: .*nowhere"):
        external_entries([{"name": "e", "root": str(tmp_path / "nowhere")}])
    with pytest.raises(ValueError, match="used by another external set"):
        external_entries([{"name": "e", "root": str(tmp_path / "ext")}] * 2)
    with pytest.raises(ValueError, match="must be a list"):
        external_entries({"name": "e", "root": str(tmp_path / "ext")})
    with pytest.raises(ValueError, match="layout 'list' needs"):
        external_entries([{"name": "e", "root": str(tmp_path / "ext"), "layout": "list"}])
    listing = tmp_path / "ext" / "list.txt"
    spec = [{"name": "e", "root": str(tmp_path / "ext"), "layout": "list", "list": "list.txt"}]
    listing.write_text("x/0.png a b\n")
    with pytest.raises(ValueError, match=r"list.txt, line 1: expected"):
        external_entries(spec)
    listing.write_text("x/0.png\nx/9.png\n")
    with pytest.raises(FileNotFoundError, match=r"list.txt, line 2: .*9.png does not exist"):
        external_entries(spec)
    listing.write_text("../x/0.png\n")
    with pytest.raises(ValueError, match="is not under"):
        external_entries(spec)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no images"):
        external_entries([{"name": "e", "root": str(tmp_path / "empty")}])


def test_shift_changes_the_rendering_not_the_size() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    shifted = shift_image(image, 0.75, 75)
    assert shifted.shape == image.shape and shifted.dtype == np.uint8
    assert np.array_equal(shifted, shift_image(image, 0.75, 75))  # deterministic
    # resolution loss removes high frequencies: neighbouring pixels differ less
    roughness = [np.abs(np.diff(x.astype(float), axis=1)).mean() for x in (image, shifted)]
    assert roughness[1] < 0.6 * roughness[0]
    assert np.array_equal(shift_image(image, 1.0, None), image)  # no shift is the identity


def test_max_audited_caps_the_scored_samples_not_the_training_set(tmp_path: Path) -> None:
    from functools import partial

    from miabench.data.datamodule import MembershipDataModule

    write_identity_folders(tmp_path / "faces", n_ids=6, per_id=5)
    dataset = partial(ImageFolderFaces, **_kwargs(tmp_path / "faces"))
    common = {"members_from": "members", "nonmembers_from": "nonmembers", "seed": 0}
    full = MembershipDataModule(dataset, n_members=12, n_nonmembers=10, **common)
    capped = MembershipDataModule(dataset, n_members=12, n_nonmembers=10, max_audited=4, **common)
    full.setup()
    capped.setup()
    assert capped.manifest == full.manifest  # the split (and so the victim) is unchanged
    assert len(capped.train_dataloader().dataset) == 12

    def ids(loader) -> list[str]:
        return [r.sample_id for r in loader.dataset.records()]

    members, nonmembers = ids(capped.member_dataloader()), ids(capped.nonmember_dataloader())
    assert len(members) == len(nonmembers) == 4
    assert set(members) <= set(full.manifest.ids("member"))
    assert set(nonmembers) <= set(full.manifest.ids("nonmember"))
    assert members == [i for i in full.manifest.ids("member") if i in set(members)]  # order
    calibration = members[:2]
    assert ids(capped.role_dataloader("member", calibration)) == calibration
    with pytest.raises(ValueError, match="max_audited must be >= 1"):
        MembershipDataModule(dataset, max_audited=0)


def test_shifted_proxy_nonmembers_are_the_controls_identities_rerendered(tmp_path: Path) -> None:
    from miabench.data.embedded.proxy_faces import FashionIdentities, build_shifted_nonmembers
    from tests.data.test_faces_proxy import write_idx

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10, dtype=np.uint8), 30)
    images = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8)
    raw = tmp_path / "FashionMNIST" / "raw"
    write_idx(raw, "train", images[:240], labels[:240])
    write_idx(raw, "t10k", images[240:], labels[240:])
    sizes = {"images_per_identity": 15, "n_member_identities": 10, "n_nonmember_identities": 10}
    out = build_shifted_nonmembers(
        tmp_path, tmp_path / "shifted", cluster_seed=0, identity_seed=3, **sizes
    )
    control = FashionIdentities(root=tmp_path, phase="nonmembers", identity_seed=3, **sizes)
    spec = [{"name": "shifted", "root": str(out)}]
    published = FashionIdentities(
        root=tmp_path, phase="nonmembers", identity_seed=3, nonmembers=spec, **sizes
    )
    # the same identities and images, only rendered differently
    assert [
        f"{sid.split('/')[0]}@shifted/{sid.split('/')[1]}.png" for sid, *_ in control._entries
    ] == [sid for sid, *_ in published._entries]
    a, b = control[0]["input"], published[0]["input"]
    assert a.shape == b.shape == (1, 32, 32) and not torch_equal(a, b)
    assert float(b[0, :2].abs().sum()) == 0  # zero-padded like the proxy's own images
    # rebuilt only when missing; other settings in the same folder are refused
    assert build_shifted_nonmembers(tmp_path, out, cluster_seed=0, identity_seed=3, **sizes) == out
    with pytest.raises(ValueError, match="was built with"):
        build_shifted_nonmembers(tmp_path, out, cluster_seed=0, identity_seed=4, **sizes)


def torch_equal(a, b) -> bool:  # noqa: ANN001 - two tensors
    return bool((a == b).all())
