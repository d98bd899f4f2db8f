"""MXNet RecordIO (InsightFace ``train.rec`` / ``train.idx``), read and written without mxnet.

Written by hand because mxnet is unmaintained and does not install on current Python; the
format is small: each record is <magic u32><lrecord u32><data, padded to 4 bytes>, where
lrecord's top 3 bits flag a record split in parts (1 first, 2 middle, 3 last; the writer
splits where the data contained the magic, which is re-inserted on reading) and the low 29
bits are the part's length. InsightFace's data starts with an IRHeader
(flag u32, label f32, id u64, id2 u64); flag > 0 means ``flag`` float32 labels follow it.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from miabench.data.aligned import (
    read_text_lines,
    to_rgb,
)
from miabench.utils.io import atomic_write

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
