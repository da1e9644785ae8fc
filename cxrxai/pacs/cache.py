"""Instances fetched from a PACS, kept on disk by their UIDs so that a rerun (or the
Review page opening a case again) does not fetch them again.

Each is checked before it is kept, like an upload: its header's size against
$CXRXAI_MAX_IMAGE_SIDE before it is fetched (from the PACS's search answer), its bytes
against the largest such file while it is fetched, then read whole (pixels decoded) and
its SOP Instance UID matched to the one asked for. Files are private to this user: they
hold patient identifiers, which never leave them (the results database keys a case by
its UIDs only). The folder is kept under $CXRXAI_PACS_CACHE_MB: after each fetch the files
used longest ago go first, never one this cache object fetched or read (a run's cases stay
readable to its end, even when they alone are more than the limit).
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import pydicom

from cxrxai.environment import cache_dir, max_image_side, pacs_cache_bytes
from cxrxai.errors import CxrxaiError, PacsError
from cxrxai.imageio import read_image
from cxrxai.pacs.source import RADIOGRAPH_MODALITIES, InstanceRef, PacsSource
from cxrxai.xray import check_size, max_file_bytes

OBJECTS = "objects"  # a study's readings (SEG, SR) beside its images


class InstanceCache:
    """A folder of fetched instances: ``<root>/<study UID>/<SOP instance UID>.dcm``."""

    def __init__(self, root: Path | None = None, limit_bytes: int | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "pacs"
        self._limit_bytes = limit_bytes
        self._in_use: set[Path] = set()  # fetched or read by this object: never evicted

    @property
    def limit_bytes(self) -> int:
        """The most the folder may hold ($CXRXAI_PACS_CACHE_MB unless given): read when
        needed, so that reading cached cases never depends on it."""
        return pacs_cache_bytes() if self._limit_bytes is None else self._limit_bytes

    def path(self, ref: InstanceRef) -> Path:
        # UIDs are digits and dots (checked in InstanceRef's making): safe as names.
        return self.root / ref.study_uid / f"{ref.sop_uid}.dcm"

    def get(self, source: PacsSource, ref: InstanceRef) -> Path:
        """The instance's file, fetched from ``source`` when it is not here yet."""
        path = self.path(ref)
        if self._kept(path, ref):
            return path
        label = f"{source.address} instance {ref.sop_uid}"
        check_radiograph(ref, label)
        _ = self.limit_bytes  # a bad $CXRXAI_PACS_CACHE_MB is said before any fetch
        limit = max_image_side()
        data = source.fetch(ref, max_file_bytes(limit))
        if _sop_uid(data) != ref.sop_uid:
            raise PacsError(f"{source.address} sent another instance than {ref.sop_uid}.")
        read_image(data, name=label, max_side=limit)  # refuses what cannot be read
        self._keep(path, data)
        return path

    def get_object(self, source: PacsSource, ref: InstanceRef) -> Path:
        """A SEG or SR of the study (a reading), fetched when it is not here yet: kept in
        ``<study>/objects/``, size-checked and its UID matched like an image, but not
        decoded as one."""
        path = self.root / ref.study_uid / OBJECTS / f"{ref.sop_uid}.dcm"
        if self._kept(path, ref):
            return path
        _ = self.limit_bytes  # a bad $CXRXAI_PACS_CACHE_MB is said before any fetch
        data = source.fetch(ref, max_file_bytes(max_image_side()))
        if _sop_uid(data) != ref.sop_uid:
            raise PacsError(f"{source.address} sent another instance than {ref.sop_uid}.")
        self._keep(path, data)
        return path

    def usage(self) -> tuple[int, int]:
        """(files, bytes) the cache holds."""
        sizes = [size for _, _, size in _files(self.root)]
        return len(sizes), sum(sizes)

    def clear(self) -> int:
        """Remove every cached instance (and the folders left empty); returns how many."""
        removed = 0
        for path, _, _ in _files(self.root):
            path.unlink(missing_ok=True)
            removed += 1
        _remove_empty_folders(self.root)
        return removed

    def _kept(self, path: Path, ref: InstanceRef) -> bool:
        if not (path.is_file() and _sop_uid(path.read_bytes()) == ref.sop_uid):
            return False
        os.utime(path)  # used now: the last to be evicted
        self._in_use.add(path)
        return True

    def _keep(self, path: Path, data: bytes) -> None:
        _write_private(path, data)
        self._in_use.add(path)
        self._evict()

    def _evict(self) -> None:
        """Remove the files used longest ago until the cache is within its limit, sparing
        those in use by this object."""
        limit = self.limit_bytes
        files = sorted(_files(self.root), key=lambda entry: entry[1])  # oldest use first
        total = sum(size for _, _, size in files)
        for path, _, size in files:
            if total <= limit:
                break
            if path not in self._in_use:
                path.unlink(missing_ok=True)
                total -= size
        _remove_empty_folders(self.root)


def _files(root: Path) -> list[tuple[Path, float, int]]:
    """(path, last use, size) of every cached instance under ``root``; a link, or a file
    reached through one, is not the cache's (eviction and --clear never follow one out)."""
    found = []
    inside = root.resolve()
    for path in root.glob("*/**/*.dcm") if root.is_dir() else ():
        try:
            if path.is_symlink() or not path.resolve().is_relative_to(inside):
                continue
            info = path.stat()
        except FileNotFoundError:  # removed meanwhile (another process's eviction)
            continue
        found.append((path, info.st_mtime, info.st_size))
    return found


def _remove_empty_folders(root: Path) -> None:
    for folder in sorted(root.glob("*/**/"), key=lambda p: len(p.parts), reverse=True):
        if folder != root:
            try:
                folder.rmdir()  # only when empty
            except OSError:
                pass


def check_radiograph(ref: InstanceRef, label: str) -> None:
    """Refuse, from the PACS's answer alone, what cxrxai cannot explain: another modality
    (CT, MR...), a multi-frame instance, a declared size over the limit."""
    if ref.modality not in RADIOGRAPH_MODALITIES:
        raise CxrxaiError(
            f"{label} is {ref.modality or 'of no modality'}; cxrxai explains projection chest "
            f"radiographs ({', '.join(RADIOGRAPH_MODALITIES)}) only."
        )
    if ref.frames > 1:
        raise CxrxaiError(
            f"{label} is a multi-frame instance ({ref.frames} frames); a single 2-D "
            "radiograph is expected."
        )
    if ref.rows is not None and ref.columns is not None:
        check_size(label, ref.columns, ref.rows, max_image_side(), "PACS's search answer")


def _sop_uid(data: bytes) -> str | None:
    try:
        header = pydicom.dcmread(
            io.BytesIO(data), stop_before_pixels=True, specific_tags=["SOPInstanceUID"]
        )
    except Exception:  # a damaged file: the caller fetches it again or says so
        return None
    value = header.get("SOPInstanceUID")
    return str(value) if value else None


def _write_private(path: Path, data: bytes) -> None:
    """Written whole or not at all (a temp file renamed), readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle, temp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
