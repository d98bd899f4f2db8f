"""The file form of ``weights: imagenet | <path> | none``, shared by every backbone loader."""

from __future__ import annotations

import os
from pathlib import Path


def checkpoint_path(weights: str | os.PathLike, what: str = "backbone") -> Path:
    """The local checkpoint ``weights`` names (``~`` expanded), checked to exist.

    Callers handle the keywords ``imagenet`` and ``none`` first; anything else is a file.

    Raises:
        FileNotFoundError: naming ``what`` the weights were for and the missing path.
    """
    path = Path(os.path.expanduser(str(weights)))
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} weights '{weights}' not found: {path} does not exist; expected "
            "'imagenet', 'none' or a state_dict file saved with torch.save"
        )
    return path
