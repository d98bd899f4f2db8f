"""Face datasets in their published layouts: identity folders, InsightFace RecordIO, LFW pairs."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from miabench.data.datamodule import MembershipDataModule
from miabench.data.faces import ImageFolderFaces, RecordFaces, partition_identities
from miabench.data.lfw_pairs import (
    PairsDataset,
    VerificationPairs,
    read_pairs,
    read_pairs_header,
    verification_pairs,
)
from miabench.data.recordio import (
    RECORD_MAGIC,
    IRHeader,
    RecordFormatError,
    RecordReader,
    pack_record,
    unpack_record,
    write_record_file,
)


def face_image(rng: np.random.Generator, size: int = 16) -> np.ndarray:
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def write_identity_folders(
    root: Path, n_ids: int, per_id: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """root/<identity>/<identity>_<k:04d>.png (LFW naming); returns sample_id → pixels."""
    rng = np.random.default_rng(seed)
    written = {}
    for i in range(n_ids):
        name = f"person_{i:03d}"
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(1, per_id + 1):
            pixels = face_image(rng)
            Image.fromarray(pixels).save(root / name / f"{name}_{k:04d}.png")
            written[f"{name}/{name}_{k:04d}.png"] = pixels
    return written


def write_lfw(
    root: Path,
    folds: int = 2,
    per_fold: int = 4,
    size: int = 16,
    extension: str = ".jpg",
    header: bool = True,
    seed: int = 0,
) -> Path:
    """LFW's layout: ``root/lfw/<name>/<name>_<i:04d><extension>`` and ``root/pairs.txt``.

    ``pairs.txt`` lists ``folds`` folds of ``per_fold`` same-identity pairs then ``per_fold``
    different-identity pairs, after a ``<folds> <per_fold>`` header as LFW's View 2. Each
    identity has a smooth random face (survives JPEG) and a second image that is the same
    plus faint noise, so same-identity pairs are near-identical and impostors are not.
    Returns the path of ``pairs.txt``.
    """
    rng = np.random.default_rng(seed)
    n_ids = folds * per_fold
    names = [f"person_{i:04d}" for i in range(n_ids)]
    for name in names:
        coarse = rng.integers(0, 256, (4, 4, 3)).astype(np.float64)
        face = np.kron(coarse, np.ones((size // 4, size // 4, 1)))
        (root / "lfw" / name).mkdir(parents=True, exist_ok=True)
        for k, image in enumerate((face, face + rng.normal(0, 4, face.shape)), start=1):
            pixels = np.clip(image, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "lfw" / name / f"{name}_{k:04d}{extension}")
    lines = [f"{folds}\t{per_fold}"] if header else []
    for fold in range(folds):
        ids = names[fold * per_fold : (fold + 1) * per_fold]
        lines += [f"{name}\t1\t2" for name in ids]
        # impostors: each identity against the next one of its fold
        lines += [f"{a}\t1\t{b}\t2" for a, b in zip(ids, ids[1:] + ids[:1], strict=True)]
    pairs = root / "pairs.txt"
    pairs.write_text("\n".join(lines) + "\n")
    return pairs


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_insightface_rec(
    root: Path, n_ids: int, per_id: int, seed: int = 0
) -> dict[int, tuple[int, np.ndarray]]:
    """train.rec/.idx as InsightFace packs MS1MV2: record 0 a header whose first label is
    the key after the last image, images at keys 1..N labelled with their identity, then one
    header record per identity (first, last+1 image keys)."""
    rng = np.random.default_rng(seed)
    images: dict[int, tuple[int, np.ndarray]] = {}
    key = 1
    for identity in range(n_ids):
        for _ in range(per_id):
            images[key] = (identity, face_image(rng))
            key += 1
    n_images = len(images)
    records = [
        (0, pack_record(IRHeader(2, (float(n_images + 1), float(n_images + 1 + n_ids)), 0, 0), b""))
    ]
    for k, (identity, pixels) in images.items():
        payload = png(pixels)
        if k == 2:
            # a payload holding the magic number: the writer splits it into parts
            payload = payload + struct.pack("<I", RECORD_MAGIC) + b"tail"
        # InsightFace writes some images with a label array (flag 2): identity first
        label = float(identity) if k % 2 else (float(identity), 0.0)
        flag = 0 if k % 2 else 2
        records.append((k, pack_record(IRHeader(flag, label, k, 0), payload)))
    for identity in range(n_ids):
        first = 1 + identity * per_id
        header = IRHeader(2, (float(first), float(first + per_id)), 0, 0)
        records.append((n_images + 1 + identity, pack_record(header, b"")))
    write_record_file(root / "train.rec", root / "train.idx", records)
    return images


def test_partition_is_disjoint_seeded_and_checked() -> None:
    names = [f"id{i}" for i in range(10)]
    members, nonmembers = partition_identities(names, 4, 5, seed=3)
    assert len(members) == 4 and len(nonmembers) == 5 and not set(members) & set(nonmembers)
    assert (members, nonmembers) == partition_identities(list(reversed(names)), 4, 5, seed=3)
    assert partition_identities(names, 4, 5, seed=4) != (members, nonmembers)
    with pytest.raises(ValueError, match="only 10"):
        partition_identities(names, 6, 5, seed=0)


def test_stratified_partition_gives_both_sides_the_same_stratum_mix() -> None:
    rng = np.random.default_rng(0)
    # three strata of unequal size, identities of very unequal image counts
    names = [f"c{c}_{i:03d}" for c, n in ((0, 30), (1, 20), (2, 50)) for i in range(n)]
    sizes = {name: int(rng.integers(5, 200)) for name in names}
    members, nonmembers = partition_identities(
        names, 20, 20, seed=1, stratum_pattern=r"^c\d+", sizes=sizes
    )
    assert len(members) == len(nonmembers) == 20 and not set(members) & set(nonmembers)
    by_stratum = [
        [sum(n.startswith(f"c{c}_") for n in side) for c in range(3)]
        for side in (members, nonmembers)
    ]
    assert by_stratum[0] == by_stratum[1] == [6, 4, 10]  # proportional to the strata
    for c in range(3):  # paired by image count: the sides hold about as many images
        m = sum(sizes[n] for n in members if n.startswith(f"c{c}_"))
        u = sum(sizes[n] for n in nonmembers if n.startswith(f"c{c}_"))
        assert abs(m - u) < 0.25 * (m + u) / 2
    assert (members, nonmembers) == partition_identities(
        names, 20, 20, seed=1, stratum_pattern=r"^c\d+", sizes=sizes
    )
    members, nonmembers = partition_identities(names, 10, 30, seed=1, stratum_pattern=r"^c\d+")
    assert [sum(n.startswith(f"c{c}_") for n in members) for c in range(3)] == [3, 2, 5]
    with pytest.raises(ValueError, match="does not match stratum_pattern"):
        partition_identities([*names, "x_1"], 2, 2, seed=0, stratum_pattern=r"^c\d+")


def test_image_folder_faces_items_records_and_membership(tmp_path: Path) -> None:
    written = write_identity_folders(tmp_path / "faces", n_ids=6, per_id=4)
    kwargs = {
        "root": tmp_path / "faces",
        "n_member_identities": 3,
        "n_nonmember_identities": 2,
        "image_size": 16,
    }
    members = ImageFolderFaces(phase="members", **kwargs)
    nonmembers = ImageFolderFaces(phase="nonmembers", **kwargs)
    assert len(members) == 12 and len(nonmembers) == 8 and members.num_classes == 3
    ids_m = {s.split("/")[0] for s, *_ in members._entries}
    ids_n = {s.split("/")[0] for s, *_ in nonmembers._entries}
    assert not ids_m & ids_n
    item = members[0]
    np.testing.assert_allclose(
        item["input"].permute(1, 2, 0).numpy() * 255, written[item["sample_id"]], atol=1e-3
    )
    assert 0 <= int(item["target"]) < 3
    assert int(nonmembers[0]["target"]) == -1
    # same identity ↔ same label
    labels = {}
    for i in range(len(members)):
        it = members[i]
        labels.setdefault(it["sample_id"].split("/")[0], set()).add(int(it["target"]))
    assert all(len(v) == 1 for v in labels.values()) and len(labels) == 3

    dm = MembershipDataModule(
        lambda phase, augment: ImageFolderFaces(phase=phase, augment=augment, **kwargs),
        members_from="members",
        nonmembers_from="nonmembers",
        n_members=10,
        n_nonmembers=8,
        manifest_path=tmp_path / "manifest.csv",
    )
    dm.setup()
    m_ids = {s.split("/")[0] for s in dm.manifest.ids("member")}
    n_ids = {s.split("/")[0] for s in dm.manifest.ids("nonmember")}
    assert m_ids <= ids_m and n_ids <= ids_n and len(dm.manifest.ids("member")) == 10
    batch = next(iter(dm.train_dataloader()))
    assert (batch["target"] >= 0).all()


def test_image_folder_faces_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderFaces(
            tmp_path / "missing", phase="members", n_member_identities=1, n_nonmember_identities=1
        )
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no <identity>/<image>"):
        ImageFolderFaces(
            tmp_path / "empty", phase="members", n_member_identities=1, n_nonmember_identities=1
        )
    write_identity_folders(tmp_path / "f", 2, 1)
    with pytest.raises(ValueError, match="phase"):
        ImageFolderFaces(
            tmp_path / "f", phase="train", n_member_identities=1, n_nonmember_identities=1
        )


def test_record_header_roundtrip() -> None:
    for header in (IRHeader(0, 7.0, 3, 0), IRHeader(2, (5.0, 9.0), 1, 2)):
        got, payload = unpack_record(pack_record(header, b"abc"))
        assert got == header and payload == b"abc"


def test_record_faces_reads_the_published_format(tmp_path: Path) -> None:
    images = write_insightface_rec(tmp_path, n_ids=5, per_id=3)
    reader = RecordReader(tmp_path / "train.rec", tmp_path / "train.idx")
    # the record with the magic inside its payload comes back whole
    assert unpack_record(reader.read(2))[1].endswith(struct.pack("<I", RECORD_MAGIC) + b"tail")
    kwargs = {
        "root": tmp_path,
        "n_member_identities": 3,
        "n_nonmember_identities": 2,
        "image_size": 16,
    }
    members = RecordFaces(phase="members", **kwargs)
    nonmembers = RecordFaces(phase="nonmembers", **kwargs)
    assert len(members) + len(nonmembers) == len(images)  # identity headers are not images
    for dataset in (members, nonmembers):
        for i in range(len(dataset)):
            item = dataset[i]
            key = int(item["sample_id"].split("/")[1])
            identity, pixels = images[key]
            assert item["sample_id"].split("/")[0] == f"{identity:07d}"
            np.testing.assert_allclose(
                item["input"].permute(1, 2, 0).numpy() * 255, pixels, atol=1e-3
            )
    assert len({r.sha256 for r in members.records()}) == len(members)


def test_record_reader_errors_on_corrupt_files(tmp_path: Path) -> None:
    write_insightface_rec(tmp_path, n_ids=2, per_id=2)
    data = bytearray((tmp_path / "train.rec").read_bytes())
    offsets = dict(
        tuple(map(int, line.split("\t")))
        for line in (tmp_path / "train.idx").read_text().splitlines()
    )
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.idx").write_text((tmp_path / "train.idx").read_text())
    corrupt = bytearray(data)
    corrupt[offsets[3] : offsets[3] + 4] = b"\0\0\0\0"
    (bad / "train.rec").write_bytes(bytes(corrupt))
    reader = RecordReader(bad / "train.rec", bad / "train.idx")
    with pytest.raises(
        RecordFormatError, match=r"bad/train.rec at offset \d+ \(record 3\): bad magic"
    ):
        reader.read(3)
    (bad / "train.rec").write_bytes(bytes(data[: offsets[3] + 12]))
    with pytest.raises(RecordFormatError, match="truncated"):
        RecordReader(bad / "train.rec", bad / "train.idx").read(3)
    (bad / "train.idx").write_text("0\t0\nnot-a-line\n")
    with pytest.raises(RecordFormatError, match="line 2"):
        RecordReader(bad / "train.rec", bad / "train.idx")
    with pytest.raises(FileNotFoundError, match="missing.rec"):
        RecordReader(bad / "missing.rec", bad / "train.idx")


def test_lfw_pairs(tmp_path: Path) -> None:
    write_identity_folders(tmp_path / "lfw", n_ids=3, per_id=2)
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text("1\t2\nperson_000\t1\t2\nperson_001\t1\tperson_002\t2\n")
    pairs = read_pairs(pairs_file, tmp_path / "lfw", extension=".png")
    assert [p.same for p in pairs] == [True, False]
    assert pairs[1].second == tmp_path / "lfw" / "person_002" / "person_002_0002.png"
    item = PairsDataset(pairs, image_size=16)[0]
    assert item["first"].shape == (3, 16, 16) and bool(item["same"])

    pairs_file.write_text("person_000\t1\t2\tx\ty\n")
    with pytest.raises(ValueError, match="line 1: malformed"):
        read_pairs(pairs_file, tmp_path / "lfw", extension=".png")
    pairs_file.write_text("person_000\t1\t9\n")
    with pytest.raises(ValueError, match="line 1: image .*person_000_0009.png does not exist"):
        read_pairs(pairs_file, tmp_path / "lfw", extension=".png")


def test_record_faces_without_identity_headers(tmp_path: Path) -> None:
    """A plain indexed record file (every key an image, e.g. from im2rec) is scanned."""
    rng = np.random.default_rng(1)
    images = {k: (k % 4, face_image(rng)) for k in range(12)}
    write_record_file(
        tmp_path / "train.rec",
        tmp_path / "train.idx",
        [(k, pack_record(IRHeader(0, float(i), k, 0), png(p))) for k, (i, p) in images.items()],
    )
    kwargs = {"root": tmp_path, "n_member_identities": 2, "n_nonmember_identities": 2}
    members = RecordFaces(phase="members", image_size=16, **kwargs)
    nonmembers = RecordFaces(phase="nonmembers", image_size=16, **kwargs)
    assert len(members) == len(nonmembers) == 6
    item = members[0]
    identity, pixels = images[int(item["sample_id"].split("/")[1])]
    assert item["sample_id"].startswith(f"{identity:07d}/")
    np.testing.assert_allclose(item["input"].permute(1, 2, 0).numpy() * 255, pixels, atol=1e-3)


def test_verification_pairs_follow_the_lfw_protocol_layout(tmp_path: Path) -> None:
    pairs_file = write_lfw(tmp_path, folds=2, per_fold=4)
    assert read_pairs_header(pairs_file) == (2, 4)
    bench = VerificationPairs(pairs_file, tmp_path / "lfw", image_size=8, channels=1)
    assert bench.folds == 2 and bench.name == "lfw" and bench.flip
    pairs = bench.pairs()
    assert [p.same for p in pairs] == ([True] * 4 + [False] * 4) * 2
    assert pairs[4].second == tmp_path / "lfw" / "person_0001" / "person_0001_0002.jpg"
    item = bench.dataset()[0]
    assert item["first"].shape == item["second"].shape == (1, 8, 8) and bool(item["same"])
    # same identity: near-identical pixels; impostor: not
    genuine, impostor = bench.dataset()[0], bench.dataset()[4]
    assert (genuine["first"] - genuine["second"]).abs().mean() < 0.05
    assert (impostor["first"] - impostor["second"]).abs().mean() > 0.1

    # no header (or View 1's one-number header): LFW's 10 folds
    body = pairs_file.read_text().split("\n", 1)[1]
    pairs_file.write_text(body)
    assert read_pairs_header(pairs_file) is None
    assert VerificationPairs(pairs_file, tmp_path / "lfw").folds == 10
    pairs_file.write_text("8\n" + body)
    assert read_pairs_header(pairs_file) is None
    assert len(VerificationPairs(pairs_file, tmp_path / "lfw").pairs()) == 16
    # a corrupt image fails naming its file
    (tmp_path / "lfw" / "person_0000" / "person_0000_0001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="person_0000_0001.jpg: unreadable or corrupt image"):
        bench.dataset()[0]
    # a header that disagrees with the rows
    pairs_file.write_text("3\t4\n" + body)
    with pytest.raises(ValueError, match="header announces 3 folds of 4 \\+ 4 pairs .*lists 16"):
        VerificationPairs(pairs_file, tmp_path / "lfw").pairs()


def test_verification_config_errors_name_the_key_and_path(tmp_path: Path) -> None:
    pairs_file = write_lfw(tmp_path, folds=1, per_fold=2)
    assert verification_pairs(None) is None
    built = verification_pairs(
        {"pairs": str(pairs_file), "images": str(tmp_path / "lfw"), "name": "tiny", "flip": False},
        image_size=8,
    )
    assert isinstance(built, VerificationPairs) and built.name == "tiny" and not built.flip
    assert built.folds == 1
    missing = tmp_path / "nowhere" / "pairs.txt"
    with pytest.raises(FileNotFoundError, match=f"data.verification.pairs: {missing} does not"):
        verification_pairs({"pairs": str(missing), "images": str(tmp_path / "lfw")})
    with pytest.raises(FileNotFoundError, match="data.verification.images: .*nowhere"):
        verification_pairs({"pairs": str(pairs_file), "images": str(tmp_path / "nowhere")})
    with pytest.raises(ValueError, match="set data.verification.images"):
        verification_pairs({"pairs": str(pairs_file)})
    with pytest.raises(ValueError, match="data.verification: unknown key.*'folds'"):
        verification_pairs({"pairs": str(pairs_file), "images": str(tmp_path), "folds": 3})
