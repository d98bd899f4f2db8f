"""Face-recognition datasets: identity-per-folder images and InsightFace RecordIO.

Membership here is disjoint by *identity* within one dataset: the victim trains on the
images of some identities, the audited non-members come from identities of the same dataset
it never saw. Every dataset here therefore partitions its identities once (seeded) into a member side and a
non-member side, exposed as the phases ``members`` and ``nonmembers``; the membership split
(:func:`miabench.data.membership.make_split`) then draws samples from each side, disjoint by
content hash as usual. The identity is the first path component of every ``sample_id``
(``<identity>/<file or record key>``), so the manifest records it.

That identity-disjoint, same-dataset split is this code's default and the *control*: it is
not the paper's protocol. DeAlcala et al. audit InsightFace's released IResNet-100 (trained on
all of Glint360k) and take the non-members from *other datasets* (IJB-C, FDDB, Adience,
GANDiffFace), so their auditors can score dataset shift as well as membership. That protocol
is available too: ``nonmembers`` (``data.nonmembers``) names one or more external aligned face
sets (:func:`~miabench.data.external_faces.external_entries`: identity folders or image
lists) that replace the non-member side, and ``victim.net.weights`` loads the released backbone.

Items are dicts ``{"sample_id", "input": FloatTensor[C, S, S] in [0, 1], "target":
LongTensor[] (class index among member identities, -1 for non-member identities),
"identity": LongTensor[] (index among all identities)}``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode

from miabench.data.aligned import (
    check_file_name,
    listed_image,
    read_rgb,
)
from miabench.data.base import MembershipDataset
from miabench.data.external_faces import DEFAULT_EXTENSIONS, ExternalKey, external_entries
from miabench.data.membership import SampleRecord
from miabench.data.recordio import RecordFormatError, RecordReader, decode_image, unpack_record
from miabench.metrics.calibration import stratum_of
from miabench.utils.hashing import cached_digest, settings_salt, sha256_array

PHASES = ("members", "nonmembers")


def _quotas(sizes: dict[str, int], total: int) -> dict[str, int]:
    """``total`` spread over strata in proportion to ``sizes`` (largest remainder)."""
    count = sum(sizes.values())
    exact = {s: total * n / count for s, n in sizes.items()}
    quota = {s: int(e) for s, e in exact.items()}
    for s in sorted(exact, key=lambda s: (quota[s] - exact[s], s))[: total - sum(quota.values())]:
        quota[s] += 1
    return quota


def partition_identities(
    identities: Sequence[str],
    n_member: int,
    n_nonmember: int,
    seed: int,
    stratum_pattern: str | None = None,
    sizes: dict[str, int] | None = None,
) -> tuple[list[str], list[str]]:
    """Seeded draw of disjoint member and non-member identities (each sorted).

    With ``stratum_pattern`` (e.g. the class of a proxy identity) the draw is stratified:
    each stratum gives both sides its share of identities, so members and non-members have
    the same stratum mix and an auditor cannot score membership by recognising the stratum.
    When both sides are equally large, a stratum's drawn identities are also paired by image
    count (``sizes``) and each pair is split between the sides at random, so the two sides
    hold about as many images of every stratum.

    Raises:
        ValueError: fewer identities than requested (says how many exist).
    """
    names = sorted(set(identities))
    if n_member < 1 or n_nonmember < 0:
        raise ValueError(
            f"need >= 1 member and >= 0 non-member identities, got {n_member} and {n_nonmember}"
        )
    if n_member + n_nonmember > len(names):
        raise ValueError(
            f"asked for {n_member} member + {n_nonmember} non-member identities, but the "
            f"dataset has only {len(names)}"
        )
    rng = np.random.default_rng(seed)
    if stratum_pattern is None:
        order = rng.permutation(len(names))
        members = sorted(names[i] for i in order[:n_member])
        nonmembers = sorted(names[i] for i in order[n_member : n_member + n_nonmember])
        return members, nonmembers
    strata: dict[str, list[str]] = {}
    for name in names:
        strata.setdefault(stratum_of(name, stratum_pattern), []).append(name)
    if n_member == n_nonmember:
        quota = _quotas({s: len(v) // 2 for s, v in strata.items()}, n_member)
        member_quota, nonmember_quota = quota, quota
    else:
        member_quota = _quotas({s: len(v) for s, v in strata.items()}, n_member)
        nonmember_quota = _quotas({s: len(v) for s, v in strata.items()}, n_nonmember)
    members, nonmembers = [], []
    for stratum in sorted(strata):
        pool = strata[stratum]
        m, u = member_quota[stratum], nonmember_quota[stratum]
        if m + u > len(pool):
            raise ValueError(
                f"stratum {stratum!r} has {len(pool)} identities, fewer than its share of "
                f"{m} member + {u} non-member identities"
            )
        drawn = [pool[i] for i in rng.permutation(len(pool))[: m + u]]
        if m == u and sizes is not None:
            # pair neighbours in image count (stable sort: random order among equal counts)
            drawn.sort(key=lambda name: sizes.get(name, 0))
            for first, second in zip(drawn[0::2], drawn[1::2], strict=True):
                pair = (first, second) if rng.random() < 0.5 else (second, first)
                members.append(pair[0])
                nonmembers.append(pair[1])
        else:
            members += drawn[:m]
            nonmembers += drawn[m:]
    return sorted(members), sorted(nonmembers)


class IdentityDataset(MembershipDataset):
    """Base of the identity-labelled datasets: partition, records, subsets, transforms.

    Subclasses fill ``self._entries`` (``(sample_id, identity, key)``, sorted by sample id)
    via :meth:`_index` and implement :meth:`_read` (``key`` → uint8 ``[H, W, C]``).

    Args:
        phase: ``members`` or ``nonmembers`` (the side of the identity partition).
        n_member_identities: identities the victim is trained on (its classes).
        n_nonmember_identities: identities kept for non-members.
        identity_seed: seed of the identity partition.
        image_size: side the images are resized to (112 for aligned faces).
        channels: 3 (RGB) or 1 (grayscale).
        augment: random horizontal flip, as InsightFace trains.
        stratum_pattern: regular expression whose first match in an identity's name is its
            stratum (e.g. the class of a proxy identity); the identity partition is then
            stratified (see :func:`partition_identities`). None: a plain random draw.
        nonmembers: external non-member sets (``data.nonmembers``, see
            :func:`~miabench.data.external_faces.external_entries`); when given, the ``nonmembers`` phase serves their
            images instead of this dataset's non-member identities (MINT's published
            protocol: non-members from other datasets). The member side is unchanged, so a
            run with and one without them train on the same members.
    """

    entries_attr = "_entries"

    name = "faces"

    def __init__(
        self,
        phase: str,
        n_member_identities: int,
        n_nonmember_identities: int,
        identity_seed: int = 0,
        image_size: int = 112,
        channels: int = 3,
        augment: bool = False,
        stratum_pattern: str | None = None,
        nonmembers: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.phase = phase
        self.image_size = image_size
        self.channels = channels
        self.augment = augment
        self.stratum_pattern = stratum_pattern
        #: the external non-member sets (``nonmembers``), as given
        self.external = nonmembers or []
        entries = self._index()
        sizes: dict[str, int] = {}
        for entry in entries:
            sizes[entry[1]] = sizes.get(entry[1], 0) + 1
        members, nonmembers = partition_identities(
            list(sizes),
            n_member_identities,
            n_nonmember_identities,
            identity_seed,
            stratum_pattern=stratum_pattern,
            sizes=sizes,
        )
        #: class index of each member identity: what the victim's margin head predicts.
        self.classes = {name: i for i, name in enumerate(members)}
        all_names = sorted({e[1] for e in entries})
        if self.external and phase == "nonmembers":
            # the published protocol: non-members come from other datasets
            entries = external_entries(self.external)
            all_names += sorted({e[1] for e in entries})
            side = {e[1] for e in entries}
        else:
            side = set(members if phase == "members" else nonmembers)
        self.identity_index = {name: i for i, name in enumerate(all_names)}
        self._entries = sorted((e for e in entries if e[1] in side), key=lambda e: e[0])
        self._records: list[SampleRecord] | None = None

    # -- to implement -------------------------------------------------------------------
    def _index(self) -> list[tuple[str, str, Any]]:
        raise NotImplementedError

    def _read(self, key: Any) -> np.ndarray:
        raise NotImplementedError

    def _where(self, key: Any) -> str:
        """Human-readable location of a sample (manifest ``path`` column)."""
        return str(key)

    # -- shared ---------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self._entries)

    def _pixels(self, key: Any) -> np.ndarray:
        image = read_rgb(key.path) if isinstance(key, ExternalKey) else self._read(key)
        return self.channel_pixels(image)

    def channel_pixels(self, image: np.ndarray) -> np.ndarray:
        """Decoded uint8 pixels (``[H, W]``, ``[H, W, 1]`` or RGB) with this dataset's
        ``channels``: what the content hash and the transform read."""
        if image.ndim == 2:
            image = image[:, :, None]
        if image.shape[2] == 3 and self.channels == 1:
            image = np.asarray(Image.fromarray(image).convert("L"))[:, :, None]
        elif image.shape[2] == 1 and self.channels == 3:
            image = np.repeat(image, 3, axis=2)
        return image

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample_id, identity, key = self._entries[index]
        item = self.item_from_pixels(self._pixels(key), sample_id)
        item["target"] = torch.tensor(self.classes.get(identity, -1))
        item["identity"] = torch.tensor(self.identity_index[identity])
        return item

    def content_sha256(self, pixels: np.ndarray) -> str:
        """The manifest's content hash of decoded pixels (see :meth:`records`)."""
        return sha256_array(self.channel_pixels(pixels))

    def item_from_pixels(self, pixels: np.ndarray, sample_id: str) -> dict[str, Any]:
        """The item the victim sees for decoded pixels of unknown identity (target and
        identity -1): the one transform of :meth:`__getitem__`, for callers that hold
        pixels rather than a sample of the dataset (the audit server's uploads)."""
        image = torch.from_numpy(np.array(self.channel_pixels(pixels))).permute(2, 0, 1)
        if image.shape[-1] != self.image_size or image.shape[-2] != self.image_size:
            image = F.resize(
                image,
                [self.image_size, self.image_size],
                InterpolationMode.BILINEAR,
                antialias=True,
            )
        if self.augment and torch.rand(()).item() < 0.5:
            image = F.horizontal_flip(image)
        return {
            "sample_id": sample_id,
            "input": F.to_dtype(image, torch.float32, scale=True),
            "target": torch.tensor(-1),
            "identity": torch.tensor(-1),
        }

    def records(self) -> list[SampleRecord]:
        """One record per sample; ``sha256`` hashes the decoded pixels (computed once)."""
        if self._records is None:
            self._records = [
                SampleRecord(sid, str(key.path), self._external_hash(key))
                if isinstance(key, ExternalKey)
                else SampleRecord(sid, self._where(key), self._content_hash(key))
                for sid, _, key in self._entries
            ]
        return list(self._records)

    def _external_hash(self, key: ExternalKey) -> str:
        return cached_digest(key.path, lambda: sha256_array(self._pixels(key)), settings_salt(self))

    def _content_hash(self, key: Any) -> str:
        # in-memory samples (no file to key a cache on); file readers cache (see overrides)
        return sha256_array(self._pixels(key))

    def entry_id(self, entry: tuple[str, str, Any]) -> str:
        return entry[0]

    def repr_fields(self) -> list[str]:
        return [f"phase={self.phase}", f"n={len(self)}"]


class ImageFolderFaces(IdentityDataset):
    """Identity-per-folder layout: ``root/<identity>/<image>`` (CASIA-WebFace, VGGFace2, LFW).

    Args:
        root: folder with one sub-folder per identity.
        extensions: file endings (case-insensitive) taken as images.
        **kwargs: see :class:`IdentityDataset`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        extensions: Sequence[str] = DEFAULT_EXTENSIONS,
        **kwargs: Any,
    ) -> None:
        self.root = Path(root)
        self.extensions = tuple(e.lower() for e in extensions)
        super().__init__(**kwargs)

    def _index(self) -> list[tuple[str, str, Any]]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"face dataset root {self.root} does not exist")
        folders = sorted(p for p in self.root.iterdir() if p.is_dir())
        entries = [
            (f"{check_file_name(folder).name}/{path.name}", folder.name, path)
            for folder in folders
            for path in sorted(folder.iterdir())
            if listed_image(path, self.extensions)
        ]
        empty = sorted({f.name for f in folders} - {identity for _, identity, _ in entries})
        if entries and empty:
            # an identity without images would silently change the identity partition
            raise FileNotFoundError(
                f"identity folder(s) {[str(self.root / name) for name in empty[:5]]} hold no "
                f"images with extensions {list(self.extensions)}; remove them"
            )
        if not entries:
            raise FileNotFoundError(
                f"{self.root} holds no <identity>/<image> files with extensions "
                f"{list(self.extensions)}"
            )
        return entries

    def _content_hash(self, key: Any) -> str:
        return cached_digest(key, lambda: sha256_array(self._pixels(key)), settings_salt(self))

    def _read(self, key: Any) -> np.ndarray:
        return read_rgb(key)


class RecordFaces(IdentityDataset):
    """InsightFace's ``train.rec``/``train.idx`` (MS1MV2, Glint360k) without mxnet.

    As InsightFace's ``MXFaceDataset``: when record 0 is a header (flag > 0), images are keys
    ``1 .. label[0] - 1``; otherwise every key is an image. An image's identity is its
    header's label (the first one when it carries several).

    Args:
        root: folder holding ``train.rec`` and ``train.idx`` (names overridable).
        **kwargs: see :class:`IdentityDataset`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        rec_name: str = "train.rec",
        idx_name: str = "train.idx",
        **kwargs: Any,
    ) -> None:
        self.root = Path(root)
        self.reader = RecordReader(self.root / rec_name, self.root / idx_name)
        super().__init__(**kwargs)

    def _image_keys(self) -> list[int]:
        keys = self.reader.keys()
        if 0 in self.reader.offsets:
            header, _ = unpack_record(self.reader.read(0))
            if header.flag > 0 and isinstance(header.label, tuple):
                return list(range(1, int(header.label[0])))
        return keys

    def _identity_ranges(self) -> list[tuple[str, int]] | None:
        """``(identity, key)`` from InsightFace's identity header records, when present.

        MS1MV2/Glint360k store, after the images, one header per identity whose labels are
        its ``[first, last + 1)`` image keys; reading those avoids a pass over millions of
        image records. None when the file has no such headers.
        """
        if 0 not in self.reader.offsets:
            return None
        header, _ = unpack_record(self.reader.read(0))
        if header.flag <= 0 or not isinstance(header.label, tuple) or len(header.label) < 2:
            return None
        start, stop = int(header.label[0]), int(header.label[1])
        if stop <= start or any(k not in self.reader.offsets for k in (start, stop - 1)):
            return None
        entries = []
        for identity, key in enumerate(range(start, stop)):
            ranges, _ = unpack_record(self.reader.read(key))
            if not isinstance(ranges.label, tuple) or len(ranges.label) < 2:
                return None
            name = f"{identity:07d}"
            entries += [(name, k) for k in range(int(ranges.label[0]), int(ranges.label[1]))]
        return entries

    def _index(self) -> list[tuple[str, str, Any]]:
        ranges = self._identity_ranges()
        if ranges is not None:
            return [(f"{name}/{key}", name, key) for name, key in ranges]
        entries = []
        for key in self._image_keys():
            header, _ = unpack_record(self.reader.read(key))
            label = header.label[0] if isinstance(header.label, tuple) else header.label
            identity = f"{int(label):07d}"
            entries.append((f"{identity}/{key}", identity, key))
        if not entries:
            raise RecordFormatError(f"{self.reader.rec_path} holds no image records")
        return entries

    def _read(self, key: Any) -> np.ndarray:
        _, payload = unpack_record(self.reader.read(key))
        return decode_image(payload, f"{self.reader.rec_path} record {key}")

    def _where(self, key: Any) -> str:
        return f"{self.reader.rec_path}#{key}"

    def _content_hash(self, key: Any) -> str:
        # keyed on the whole .rec file: rewriting it re-hashes every record
        salt = f"{settings_salt(self)}#{key}"
        return cached_digest(self.reader.rec_path, lambda: sha256_array(self._pixels(key)), salt)
