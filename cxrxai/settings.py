"""Where things live: the data root, the bundled checkpoint, the cache; and the device.

The data root is read in place, never copied: ``--data-root`` on the CLI wins over the
``CXRXAI_DATA`` environment variable, which wins over ``../shared/data`` next to the repo.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ENV_VAR = "CXRXAI_DATA"
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
MODELS_DIR = REPO_ROOT / "models"
DEMO_CHECKPOINT = MODELS_DIR / "demo-effnet-lite0-covidqu"


def data_root(override: str | os.PathLike[str] | None = None) -> Path:
    """The data root: ``override`` if given, else ``$CXRXAI_DATA``, else ``../shared/data``."""
    if override:
        return Path(override).expanduser().resolve()
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser().resolve()
    return DEFAULT_DATA_ROOT.resolve()


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` if given (``"cpu"``, ``"cuda"``, ``"cuda:1"``), else cuda when present."""
    if requested and requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            from cxrxai.errors import CxrxaiError

            raise CxrxaiError(
                f"Device '{requested}' was requested but no CUDA GPU is available; "
                "use --device cpu or leave it out to choose automatically."
            )
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
