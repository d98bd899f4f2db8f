"""Face-recognition datasets: identity-per-folder images, InsightFace RecordIO, LFW pairs.

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
sets (:func:`external_entries`: identity folders or image lists) that replace the non-member
side, and ``victim.net.weights`` loads the released backbone.

Items are dicts ``{"sample_id", "input": FloatTensor[C, S, S] in [0, 1], "target":
LongTensor[] (class index among member identities, -1 for non-member identities),
"identity": LongTensor[] (index among all identities)}``.
"""

from __future__ import annotations

import io
import os
import re
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode

from miabench.data.aligned import (
    check_file_name,
    listed_image,
    read_rgb,
    read_text_lines,
    to_rgb,
)
from miabench.data.base import MembershipDataset
from miabench.data.membership import SampleRecord
from miabench.metrics.calibration import stratum_of
from miabench.utils.hashing import cached_digest, settings_salt, sha256_array
from miabench.utils.io import atomic_write

PHASES = ("members", "nonmembers")
DEFAULT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def _quotas(sizes: dict[str, int], total: int) -> dict[str, int]:
    """``total`` spread over strata in proportion to ``sizes`` (largest remainder)."""
    count = sum(sizes.values())
    exact = {s: total * n / count for s, n in sizes.items()}
    quota = {s: int(e) for s, e in exact.items()}
    for s in sorted(exact, key=lambda s: (quota[s] - exact[s], s))[: total - sum(quota.values())]:
        quota[s] += 1
    return quota


#: layouts of an external non-member set (``data.nonmembers[i].layout``)
EXTERNAL_LAYOUTS = ("folder", "list")
#: keys of one ``data.nonmembers`` entry
EXTERNAL_KEYS = ("name", "root", "layout", "list", "extensions")


@dataclass(frozen=True)
class ExternalKey:
    """Where an external non-member image is (a file), and which set it belongs to."""

    path: Path
    set_name: str


def _external_spec(spec: Mapping[str, Any], where: str) -> dict[str, Any]:
    spec = dict(spec)
    unknown = sorted(set(spec) - set(EXTERNAL_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected {list(EXTERNAL_KEYS)}")
    for key in ("name", "root"):
        if not spec.get(key):
            raise ValueError(f"{where}: set {where}.{key}")
    name = str(spec["name"])
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"{where}.name {name!r}: use letters, digits, '_', '.', '-' only")
    layout = spec.get("layout", "folder")
    if layout not in EXTERNAL_LAYOUTS:
        raise ValueError(f"{where}.layout must be one of {EXTERNAL_LAYOUTS}, got {layout!r}")
    if layout == "list" and not spec.get("list"):
        raise ValueError(f"{where}: layout 'list' needs {where}.list (the image-list file)")
    spec["layout"] = layout
    return spec


def external_entries(
    specs: Sequence[Mapping[str, Any]], config_key: str = "data.nonmembers"
) -> list[tuple[str, str, ExternalKey]]:
    """``(sample_id, identity, key)`` of every image of the external non-member sets.

    Each entry of ``specs`` is ``{name, root, layout, list, extensions}``:

    - ``layout: folder`` (default): ``root/<identity>/<image>``, as
      :class:`ImageFolderFaces` reads (e.g. an aligned IJB-C or Adience export);
    - ``layout: list``: ``list`` is a text file (relative to ``root`` unless absolute) with one
      image per line, ``<path relative to root> [<identity>]``; an image without an identity
      label (FDDB, GAN-generated faces) is its own identity.

    An external identity is named ``<identity>@<name>``, so it is the first component of the
    sample id (``<identity>@<name>/<file>``) and never collides with a member identity or
    another set's.

    Raises:
        ValueError: a malformed entry, list line or duplicate set name (names the config key
            and file).
        FileNotFoundError: a missing root, list or listed image, or a set without images.
    """
    if isinstance(specs, (str, bytes)) or isinstance(specs, Mapping):
        raise ValueError(
            f"{config_key} must be a list of sets ({{name, root, layout}}), got {specs!r}"
        )
    entries: list[tuple[str, str, ExternalKey]] = []
    seen: set[str] = set()
    for i, raw in enumerate(specs):
        where = f"{config_key}[{i}]"
        spec = _external_spec(raw, where)
        name, root = str(spec["name"]), Path(os.path.expanduser(str(spec["root"])))
        if name in seen:
            raise ValueError(f"{where}.name {name!r} is used by another external set")
        seen.add(name)
        if not root.is_dir():
            raise FileNotFoundError(f"{where}.root: {root} is not a folder")
        extensions = tuple(e.lower() for e in spec.get("extensions") or DEFAULT_EXTENSIONS)
        found: list[tuple[str, str, ExternalKey]] = []
        if spec["layout"] == "folder":
            for folder in sorted(p for p in root.iterdir() if p.is_dir()):
                identity = f"{check_file_name(folder).name}@{name}"
                found += [
                    (f"{identity}/{path.name}", identity, ExternalKey(path, name))
                    for path in sorted(folder.iterdir())
                    if listed_image(path, extensions)
                ]
        else:
            listing = Path(os.path.expanduser(str(spec["list"])))
            listing = listing if listing.is_absolute() else root / listing
            if not listing.is_file():
                raise FileNotFoundError(f"{where}.list: {listing} does not exist")
            for line_no, line in enumerate(read_text_lines(listing), start=1):
                fields = line.split()
                if not fields or line.lstrip().startswith("#"):
                    continue
                if len(fields) > 2:
                    raise ValueError(
                        f"{listing}, line {line_no}: expected '<image path> [<identity>]', got "
                        f"{line!r}"
                    )
                relative = Path(fields[0])
                path = root / relative
                if relative.is_absolute() or ".." in relative.parts:
                    raise ValueError(f"{listing}, line {line_no}: {fields[0]} is not under {root}")
                if not path.is_file():
                    raise FileNotFoundError(f"{listing}, line {line_no}: {path} does not exist")
                label = fields[1] if len(fields) == 2 else relative.with_suffix("").as_posix()
                identity = f"{label.replace('/', '_')}@{name}"
                found.append(
                    (f"{identity}/{relative.as_posix()}", identity, ExternalKey(path, name))
                )
        if not found:
            raise FileNotFoundError(
                f"{where}: {root} holds no images ({spec['layout']} layout, extensions "
                f"{list(extensions)})"
            )
        entries += found
    ids = [e[0] for e in entries]
    if len(set(ids)) != len(ids):
        duplicate = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"{config_key}: sample ids listed twice: {duplicate}")
    return entries


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
            :func:`external_entries`); when given, the ``nonmembers`` phase serves their
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
        if image.ndim == 2:
            image = image[:, :, None]
        if image.shape[2] == 3 and self.channels == 1:
            image = np.asarray(Image.fromarray(image).convert("L"))[:, :, None]
        elif image.shape[2] == 1 and self.channels == 3:
            image = np.repeat(image, 3, axis=2)
        return image

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample_id, identity, key = self._entries[index]
        image = torch.from_numpy(np.array(self._pixels(key))).permute(2, 0, 1)
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
            "target": torch.tensor(self.classes.get(identity, -1)),
            "identity": torch.tensor(self.identity_index[identity]),
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


# --- MXNet RecordIO (InsightFace train.rec / train.idx), read without mxnet ---------------
# Written by hand because mxnet is unmaintained and does not install on current Python; the
# format is small: each record is <magic u32><lrecord u32><data, padded to 4 bytes>, where
# lrecord's top 3 bits flag a record split in parts (1 first, 2 middle, 3 last; the writer
# splits where the data contained the magic, which is re-inserted on reading) and the low 29
# bits are the part's length. InsightFace's data starts with an IRHeader
# (flag u32, label f32, id u64, id2 u64); flag > 0 means ``flag`` float32 labels follow it.

RECORD_MAGIC = 0xCED7230A
_IR_FORMAT = "<IfQQ"
_IR_SIZE = struct.calcsize(_IR_FORMAT)
_LENGTH_MASK = (1 << 29) - 1


class RecordFormatError(ValueError):
    """A RecordIO file that does not follow the format (names the file and offset)."""


@dataclass(frozen=True)
class IRHeader:
    """InsightFace/MXNet image record header; ``label`` is a tuple when ``flag`` > 0."""

    flag: int
    label: float | tuple[float, ...]
    id: int
    id2: int


def pack_record(header: IRHeader, payload: bytes) -> bytes:
    """IRHeader + payload as MXNet's ``recordio.pack`` builds it (used to write files)."""
    if isinstance(header.label, tuple):
        head = struct.pack(_IR_FORMAT, len(header.label), 0.0, header.id, header.id2)
        return head + np.asarray(header.label, dtype="<f4").tobytes() + payload
    return struct.pack(_IR_FORMAT, 0, float(header.label), header.id, header.id2) + payload


def unpack_record(record: bytes) -> tuple[IRHeader, bytes]:
    """Split a record into its IRHeader and payload (``recordio.unpack``)."""
    if len(record) < _IR_SIZE:
        raise RecordFormatError(f"record of {len(record)} bytes is shorter than an IRHeader")
    flag, label, id_, id2 = struct.unpack(_IR_FORMAT, record[:_IR_SIZE])
    payload = record[_IR_SIZE:]
    if flag > 0:
        if len(payload) < 4 * flag:
            raise RecordFormatError(f"record header announces {flag} labels; too few bytes")
        labels = tuple(float(v) for v in np.frombuffer(payload[: 4 * flag], dtype="<f4"))
        return IRHeader(flag, labels, id_, id2), payload[4 * flag :]
    return IRHeader(flag, label, id_, id2), payload


def write_record_file(
    rec_path: str | os.PathLike, idx_path: str | os.PathLike, records: Iterable[tuple[int, bytes]]
) -> None:
    """Write ``(key, record)`` pairs as ``.rec`` + ``.idx`` (MXIndexedRecordIO layout).

    Records holding the magic number are split into parts as MXNet does. Both files are
    written atomically.
    """
    magic = struct.pack("<I", RECORD_MAGIC)
    data, index = bytearray(), []
    for key, record in records:
        index.append(f"{key}\t{len(data)}\n")
        parts = record.split(magic)
        for i, part in enumerate(parts):
            cflag = 0 if len(parts) == 1 else (1 if i == 0 else (3 if i == len(parts) - 1 else 2))
            data += magic + struct.pack("<I", (cflag << 29) | len(part)) + part
            data += b"\0" * (-len(part) % 4)
    atomic_write(rec_path, lambda p: Path(p).write_bytes(bytes(data)))
    atomic_write(idx_path, lambda p: Path(p).write_text("".join(index)))


class RecordReader:
    """Random access to an MXNet indexed RecordIO file pair (``train.rec`` + ``train.idx``).

    Opened lazily per process, so it works in DataLoader workers.
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike) -> None:
        self.rec_path, self.idx_path = Path(rec_path), Path(idx_path)
        for path in (self.rec_path, self.idx_path):
            if not path.is_file():
                raise FileNotFoundError(f"record file {path} does not exist")
        self.offsets: dict[int, int] = {}
        for line_no, line in enumerate(read_text_lines(self.idx_path), start=1):
            if not line.strip():
                continue
            fields = line.split("\t")
            try:
                key, offset = int(fields[0]), int(fields[1])
            except (IndexError, ValueError) as err:
                raise RecordFormatError(
                    f"{self.idx_path}, line {line_no}: expected '<key>\\t<offset>', got {line!r}"
                ) from err
            self.offsets[key] = offset
        self._handle: BinaryIO | None = None
        self._pid = -1

    def _file(self) -> BinaryIO:
        if self._handle is None or self._pid != os.getpid():
            self._handle = self.rec_path.open("rb")
            self._pid = os.getpid()
        return self._handle

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handle": None, "_pid": -1}

    def keys(self) -> list[int]:
        return sorted(self.offsets)

    def read(self, key: int) -> bytes:
        """The (reassembled) record stored under ``key``."""
        if key not in self.offsets:
            raise KeyError(f"{self.idx_path} has no record {key}")
        handle = self._file()
        offset = self.offsets[key]
        handle.seek(offset)
        magic = struct.pack("<I", RECORD_MAGIC)
        out = bytearray()
        while True:
            head = handle.read(8)
            where = f"{self.rec_path} at offset {handle.tell() - len(head)} (record {key})"
            if len(head) < 8:
                raise RecordFormatError(f"{where}: file ends inside a record header")
            found, lrecord = struct.unpack("<II", head)
            if found != RECORD_MAGIC:
                raise RecordFormatError(
                    f"{where}: bad magic 0x{found:08x} (expected 0x{RECORD_MAGIC:08x}); "
                    "corrupt file or wrong .idx"
                )
            cflag, length = lrecord >> 29, lrecord & _LENGTH_MASK
            part = handle.read(length)
            if len(part) < length:
                raise RecordFormatError(f"{where}: record truncated ({len(part)}/{length} bytes)")
            handle.seek(-length % 4, io.SEEK_CUR)
            out += part
            if cflag in (0, 3):
                return bytes(out)
            out += magic  # the writer split the data where the magic occurred

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def decode_image(payload: bytes, where: str) -> np.ndarray:
    """Decode an encoded image (JPEG/PNG) to uint8 RGB ``[H, W, 3]``."""
    try:
        with Image.open(io.BytesIO(payload)) as image:
            image.load()
            return to_rgb(image, where)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise RecordFormatError(f"{where}: payload is not a decodable image ({err})") from err


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


# --- LFW-style verification pairs --------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """One verification pair: two image paths and whether they show the same identity."""

    first: Path
    second: Path
    same: bool


def read_pairs(
    pairs_path: str | os.PathLike, images_root: str | os.PathLike, extension: str = ".jpg"
) -> list[Pair]:
    """Parse an LFW ``pairs.txt``: ``name i j`` (same) or ``name1 i name2 j`` (different).

    A first line of one or two integers (folds, pairs per fold) is a header and skipped.
    Images are ``<images_root>/<name>/<name>_<i:04d><extension>`` as LFW stores them.

    Raises:
        ValueError: naming the file and line of a malformed row or a missing image.
    """
    pairs_path, root = Path(pairs_path), Path(images_root)
    lines = read_text_lines(pairs_path)
    pairs: list[Pair] = []

    def image(name: str, number: str, line_no: int) -> Path:
        path = root / name / f"{name}_{int(number):04d}{extension}"
        if not path.is_file():
            raise ValueError(f"{pairs_path}, line {line_no}: image {path} does not exist")
        return path

    for line_no, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if line_no == 1 and all(f.isdigit() for f in fields) and len(fields) <= 2:
            continue
        try:
            if len(fields) == 3:
                name, i, j = fields
                pairs.append(Pair(image(name, i, line_no), image(name, j, line_no), True))
            elif len(fields) == 4:
                a, i, b, j = fields
                pairs.append(Pair(image(a, i, line_no), image(b, j, line_no), False))
            else:
                raise ValueError("expected 3 or 4 fields")
        except ValueError as err:
            if str(err).startswith(str(pairs_path)):
                raise
            raise ValueError(
                f"{pairs_path}, line {line_no}: malformed pair {line!r} ({err}); expected "
                "'name i j' or 'name1 i name2 j'"
            ) from err
    if not pairs:
        raise ValueError(f"{pairs_path} holds no pairs")
    return pairs


class PairsDataset(Dataset):
    """Both images of every pair, for embedding once: items ``{"first", "second", "same"}``.

    Args:
        pairs: from :func:`read_pairs`.
        image_size: side images are resized to.
        channels: 3 or 1.
    """

    def __init__(self, pairs: Sequence[Pair], image_size: int = 112, channels: int = 3) -> None:
        self.pairs = list(pairs)
        self.image_size = image_size
        self.channels = channels

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, path: Path) -> torch.Tensor:
        pixels = read_rgb(path)
        if self.channels == 1:
            pixels = np.asarray(Image.fromarray(pixels).convert("L"))
        tensor = torch.from_numpy(np.array(pixels))
        tensor = tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)
        tensor = F.resize(tensor, [self.image_size] * 2, InterpolationMode.BILINEAR, antialias=True)
        return F.to_dtype(tensor, torch.float32, scale=True)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        return {
            "first": self._load(pair.first),
            "second": self._load(pair.second),
            "same": torch.tensor(pair.same),
        }


#: folds of the LFW protocol when a pairs file's header does not give their number
DEFAULT_FOLDS = 10
#: keys of a ``data.verification`` node
VERIFICATION_KEYS = ("pairs", "images", "extension", "name", "flip")


def read_pairs_header(pairs_path: str | os.PathLike) -> tuple[int, int] | None:
    """``(folds, pairs of each kind per fold)`` from a ``pairs.txt`` header, or None.

    LFW's View 2 file starts with ``10 300``: 10 folds, each 300 same-identity pairs then 300
    different-identity pairs. A one-number header (View 1's ``1100``) gives no folds.
    """
    with Path(pairs_path).open() as handle:
        fields = handle.readline().split()
    if len(fields) == 2 and all(f.isdigit() for f in fields):
        return int(fields[0]), int(fields[1])
    return None


class VerificationPairs:
    """An LFW-style verification benchmark (evaluation only): ``pairs.txt`` + images root.

    The pairs are neither members nor non-members and do not shape the victim; a victim that
    can verify faces embeds them in its utility pass
    (:meth:`~miabench.victims.face_recognition.FaceRecognitionVictim.benchmark_utility`).
    The files are checked on construction, the pairs read on first use.

    Args:
        pairs: LFW ``pairs.txt`` (see :func:`read_pairs`).
        images: root of ``<name>/<name>_<i:04d><extension>``.
        extension: image file ending.
        name: the benchmark's display name (its key in the results).
        flip: also embed each horizontally flipped image and add the two embeddings, as
            InsightFace's verification does.
        image_size: side the images are resized to (the victim's input size).
        channels: 3 or 1, as the victim's input.
        config_key: config path of this node, named in errors.

    Raises:
        FileNotFoundError: the pairs file or the images root does not exist (names the
            config key and the path).
    """

    def __init__(
        self,
        pairs: str | os.PathLike,
        images: str | os.PathLike,
        extension: str = ".jpg",
        name: str = "lfw",
        flip: bool = True,
        image_size: int = 112,
        channels: int = 3,
        config_key: str = "data.verification",
    ) -> None:
        self.pairs_path, self.images = Path(pairs), Path(images)
        if not self.pairs_path.is_file():
            raise FileNotFoundError(
                f"{config_key}.pairs: {self.pairs_path} does not exist (an LFW-style pairs.txt)"
            )
        if not self.images.is_dir():
            raise FileNotFoundError(
                f"{config_key}.images: {self.images} is not a folder of <name>/<name>_<i>"
                f"{extension} images"
            )
        self.extension = extension
        self.name = str(name)
        self.flip = bool(flip)
        self.image_size = image_size
        self.channels = channels
        header = read_pairs_header(self.pairs_path)
        #: cross-validation folds: the header's number when it gives one, else LFW's 10
        self.folds = header[0] if header is not None else DEFAULT_FOLDS
        self._header = header
        self._pairs: list[Pair] | None = None

    def pairs(self) -> list[Pair]:
        """The pairs in file order (read once).

        Raises:
            ValueError: a malformed file (see :func:`read_pairs`), a pair count that differs
                from the header's ``folds x 2 x per fold``, or fewer pairs than folds.
        """
        if self._pairs is None:
            pairs = read_pairs(self.pairs_path, self.images, self.extension)
            if self._header is not None and len(pairs) != 2 * self._header[0] * self._header[1]:
                folds, per_fold = self._header
                raise ValueError(
                    f"{self.pairs_path}: header announces {folds} folds of {per_fold} + "
                    f"{per_fold} pairs ({2 * folds * per_fold}), the file lists {len(pairs)}"
                )
            if len(pairs) < self.folds:
                raise ValueError(
                    f"{self.pairs_path}: {len(pairs)} pairs cannot fill {self.folds} folds"
                )
            self._pairs = pairs
        return self._pairs

    def dataset(self) -> PairsDataset:
        """Both images of every pair at the victim's input size, in file order."""
        return PairsDataset(self.pairs(), image_size=self.image_size, channels=self.channels)

    def describe(self) -> dict[str, Any]:
        """Where the benchmark comes from and how it is scored (recorded with the results)."""
        return {
            "pairs": str(self.pairs_path),
            "images": str(self.images),
            "flip": self.flip,
        }

    def __repr__(self) -> str:
        return f"VerificationPairs(name={self.name!r}, pairs={str(self.pairs_path)!r})"


def verification_pairs(
    spec: Mapping[str, Any] | None,
    image_size: int = 112,
    channels: int = 3,
    config_key: str = "data.verification",
) -> VerificationPairs | None:
    """Build the benchmark of a ``data.verification`` config node; None when it is null.

    Raises:
        ValueError: unknown keys or a missing ``pairs`` / ``images`` (named with
            ``config_key``).
        FileNotFoundError: see :class:`VerificationPairs`.
    """
    if spec is None:
        return None
    spec = dict(spec)
    unknown = sorted(set(spec) - set(VERIFICATION_KEYS))
    if unknown:
        raise ValueError(
            f"{config_key}: unknown key(s) {unknown}; expected {list(VERIFICATION_KEYS)}"
        )
    missing = [key for key in ("pairs", "images") if spec.get(key) is None]
    if missing:
        raise ValueError(f"{config_key}: set {', '.join(f'{config_key}.{k}' for k in missing)}")
    return VerificationPairs(
        **spec, image_size=image_size, channels=channels, config_key=config_key
    )


def iter_identity_images(root: str | os.PathLike) -> Iterator[tuple[str, Path]]:
    """``(identity, path)`` of every image in an identity-per-folder tree (sorted)."""
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in DEFAULT_EXTENSIONS:
                yield folder.name, path
