"""Where things live: the data root, the bundled checkpoint, the cache, the databases;
and the device. The one place that reads the environment variables (``CXRXAI_*``).

The data root is read in place, never copied: ``--data-root`` on the CLI wins over the
``CXRXAI_DATA`` environment variable, which wins over ``../shared/data`` next to the repo.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from cxrxai.errors import CxrxaiError

if TYPE_CHECKING:  # torch is imported where a device is picked: --help stays fast
    import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ENV_VAR = "CXRXAI_DATA"
DEFAULT_DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
MODELS_DIR = REPO_ROOT / "models"
DEMO_CHECKPOINT = MODELS_DIR / "demo-effnet-lite0-covidqu"
LUNG_CHECKPOINT = MODELS_DIR / "lungs-unet-lite0-covidqu"
LUNG_MODEL_ENV_VAR = "CXRXAI_LUNG_MODEL"
BACKGROUND_MAPS_ENV_VAR = "CXRXAI_BACKGROUND_MAPS"
RESULTS_ENV_VAR = "CXRXAI_RESULTS"
STUDY_DB_ENV_VAR = "CXRXAI_STUDY_DB"
CACHE_ENV_VAR = "CXRXAI_CACHE"
CHECKPOINT_ENV_VAR = "CXRXAI_CHECKPOINT"
MODELS_ENV_VAR = "CXRXAI_MODELS"
MAX_SIDE_ENV_VAR = "CXRXAI_MAX_IMAGE_SIDE"
PUBLIC_URL_ENV_VAR = "CXRXAI_PUBLIC_URL"
# The largest flat-panel chest detectors are about 4,300 x 4,300 pixels (43 x 43 cm at
# 0.1 mm); 5,000 admits every real chest radiograph with a margin.
DEFAULT_MAX_IMAGE_SIDE = 5000
ADMIN_PASSWORD_ENV_VAR = "CXRXAI_ADMIN_PASSWORD"
PACS_CACHE_ENV_VAR = "CXRXAI_PACS_CACHE_MB"
DEFAULT_PACS_CACHE_MB = 2048


def _from_env(name: str) -> str | None:
    return os.environ.get(name) or None


def results_path() -> Path:
    """The batch evaluation's database: $CXRXAI_RESULTS, else results/evaluation.sqlite
    in the repository (``evaluate`` writes it, ``report`` and the Cases page read it)."""
    env = _from_env(RESULTS_ENV_VAR)
    return Path(env) if env else REPO_ROOT / "results" / "evaluation.sqlite"


def demo_results_path() -> Path:
    """The demo cases' evaluation, written by ``precompute-demo`` (scripts/run.sh)."""
    return REPO_ROOT / "results" / "demo-evaluation.sqlite"


def study_path() -> Path:
    """The study database: $CXRXAI_STUDY_DB, else results/study.sqlite in the repository."""
    env = _from_env(STUDY_DB_ENV_VAR)
    return Path(env) if env else REPO_ROOT / "results" / "study.sqlite"


def cache_dir() -> Path:
    """The heatmap cache: $CXRXAI_CACHE, else cache/heatmaps in the repository."""
    env = _from_env(CACHE_ENV_VAR)
    return Path(env) if env else REPO_ROOT / "cache" / "heatmaps"


def model_folders() -> list[Path]:
    """Where the dashboard offers checkpoints from: models/ in the repository, then every
    folder listed in $CXRXAI_MODELS (separated by ``os.pathsep``)."""
    listed = (_from_env(MODELS_ENV_VAR) or "").split(os.pathsep)
    return [MODELS_DIR, *(Path(entry).expanduser() for entry in listed if entry)]


def max_image_side() -> int:
    """The largest image side (pixels) read: $CXRXAI_MAX_IMAGE_SIDE, else 5,000. Larger
    images are refused from their header, before any pixel is decoded."""
    return _whole_number(MAX_SIDE_ENV_VAR, DEFAULT_MAX_IMAGE_SIDE, 64, "pixels")


def pacs_cache_bytes() -> int:
    """How much the cache of instances fetched from a PACS may hold: $CXRXAI_PACS_CACHE_MB
    megabytes, else 2,048. They hold patient identifiers, so they are not kept forever."""
    return _whole_number(PACS_CACHE_ENV_VAR, DEFAULT_PACS_CACHE_MB, 1, "megabytes") << 20


def _whole_number(name: str, default: int, minimum: int, unit: str) -> int:
    """The whole number in $``name``, ``default`` when unset; a clear error naming the
    variable for anything else or anything under ``minimum``."""
    env = _from_env(name)
    if env is None:
        return default
    try:
        value = int(env)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise CxrxaiError(
            f"${name} must be a whole number of {unit}, at least {minimum} (got {env!r}); "
            f"leave it unset for {default}."
        )
    return value


def public_url() -> str | None:
    """$CXRXAI_PUBLIC_URL: the address raters reach the dashboard at (a reverse proxy's
    https://..., say), for invitation links; else the pages use the address in use."""
    return _from_env(PUBLIC_URL_ENV_VAR)


def checkpoint_from_env() -> str | None:
    """$CXRXAI_CHECKPOINT: the checkpoint the dashboard opens (else the demo)."""
    return _from_env(CHECKPOINT_ENV_VAR)


def lung_model_path() -> Path:
    """$CXRXAI_LUNG_MODEL: the lung-field model's checkpoint, else the bundled one."""
    env = _from_env(LUNG_MODEL_ENV_VAR)
    return Path(env).expanduser() if env else LUNG_CHECKPOINT


def background_maps() -> bool:
    """Whether the dashboard computes the demo cases' LIME and SHAP maps in the background
    after it starts ($CXRXAI_BACKGROUND_MAPS=0 turns it off; the tests do)."""
    return (_from_env(BACKGROUND_MAPS_ENV_VAR) or "1").strip().lower() not in ("0", "false", "no")


def admin_password_from_env() -> str | None:
    """$CXRXAI_ADMIN_PASSWORD, for ``study create`` in scripts."""
    return _from_env(ADMIN_PASSWORD_ENV_VAR)


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
    import torch

    if requested and requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise CxrxaiError(
                f"Device '{requested}' was requested but no CUDA GPU is available; "
                "use --device cpu or leave it out to choose automatically."
            )
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
