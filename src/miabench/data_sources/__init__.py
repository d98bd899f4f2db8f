"""Public datasets one command away: download (resumable), verify, unpack in the readers' layout.

Each dataset is a YAML file in ``registry/`` (``_target_: miabench.data_sources.DatasetSource``):
where its files come from, their published checksums, what the archive must contain and where
it goes under the data folder. ``python -m miabench.prepare_data <name>`` runs it.

Checksums: a file whose publisher gives a checksum is verified against it (``md5`` or
``sha256``). Where none is published, the SHA-256 of the first download is recorded in
``<data_dir>/downloads/checksums.json`` and later downloads must match it (trust on first
use); this is said when it happens.
"""

from miabench.data_sources.archives import find_prefix, match_archive, mismatch_message, unpack
from miabench.data_sources.download import download, file_digest, mirrored, verify
from miabench.data_sources.prepare import prepare
from miabench.data_sources.sources import (
    REGISTRY,
    DatasetSource,
    PrepareError,
    SourceFile,
    available,
    load_source,
)

__all__ = [
    "REGISTRY",
    "DatasetSource",
    "PrepareError",
    "SourceFile",
    "available",
    "download",
    "file_digest",
    "find_prefix",
    "load_source",
    "match_archive",
    "mirrored",
    "mismatch_message",
    "prepare",
    "unpack",
    "verify",
]
