"""VinDr-CXR loader on the real train.csv shipped in torchxrayvision's package data."""

from __future__ import annotations

from importlib.resources import files

import pytest

from cxrxai.datasets.vindr import NO_FINDING, load_vindr
from cxrxai.errors import DatasetError, ImageReadError


@pytest.fixture(scope="module")
def vindr_cases():
    return load_vindr(
        files("torchxrayvision") / "data" / "vinbigdata-train.csv.gz",
        images_dir="/nonexistent/vindr/train",
    )


def test_counts(vindr_cases):
    assert len(vindr_cases) == 15000
    negatives = [c for c in vindr_cases if c.labels == [NO_FINDING]]
    assert len(negatives) == 10606
    assert all(not c.annotations for c in negatives)


def test_radiologist_ids_kept(vindr_cases):
    authors = {a.author for c in vindr_cases for a in c.annotations}
    assert authors <= {f"R{i}" for i in range(1, 18)} and len(authors) >= 10
    boxed = next(c for c in vindr_cases if len(c.authors()) == 3)
    assert all(a.kind == "box" and a.box[2] > a.box[0] for a in boxed.annotations)


def test_missing_image_reported_clearly(vindr_cases):
    with pytest.raises(ImageReadError, match=r"file not found.*vindr-cxr"):
        vindr_cases[0].load_image()


def test_wrong_columns(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("image_id,label\nabc,1\n")
    with pytest.raises(DatasetError, match="lacks VinDr-CXR column"):
        load_vindr(path)
