"""COVID-QU-Ex loader on the real shared data."""

from __future__ import annotations

import numpy as np
import pytest

from cxrxai.datasets.covidqu import CLASSES, load_covid_qu_ex
from cxrxai.datasets.registry import limit_cases, load_split_cases
from cxrxai.errors import DatasetError


@pytest.fixture(scope="module")
def val_cases(covid_root):
    return load_covid_qu_ex(covid_root / "Val")


def test_val_counts_and_classes(val_cases):
    counts = {c: sum(case.labels == [c] for case in val_cases) for c in CLASSES}
    assert counts == {"COVID-19": 466, "Non-COVID": 233, "Normal": 233}
    assert len({case.case_id for case in val_cases}) == len(val_cases)


def test_train_counts(covid_root):
    cases = load_covid_qu_ex(covid_root / "Train")
    assert len(cases) == 1864 + 932 + 932


def test_covid_case_has_nonempty_infection_and_lung_masks(val_cases):
    case = next(c for c in val_cases if c.labels == ["COVID-19"])
    image = case.load_image()
    assert image.shape == (256, 256)
    infection = case.findings()[0]
    assert infection.kind == "mask" and infection.author == "QaTa-COV19"
    mask = infection.load_mask()
    assert mask.shape == image.shape and 0 < mask.mean() < 0.6
    lungs = case.anatomy("lungs")
    assert lungs is not None and lungs.load_mask().mean() > 0.1


def test_controls_have_empty_infection_masks(val_cases):
    for class_name in ("Non-COVID", "Normal"):
        controls = [c for c in val_cases if c.labels == [class_name]][:20]
        assert all(not c.findings()[0].load_mask().any() for c in controls)


def test_registry_resolves_split_name_and_limit(covid_root):
    cases = load_split_cases("covid-qu-ex", "Val", covid_root.parent, limit_per_class=3)
    assert [c.labels[0] for c in cases] == [c for c in CLASSES for _ in range(3)]
    assert limit_cases(cases, None) is cases


def test_missing_split_is_clear(tmp_path):
    with pytest.raises(DatasetError, match=r"split folder .* not found"):
        load_covid_qu_ex(tmp_path / "Test")
    (tmp_path / "Empty").mkdir()
    with pytest.raises(DatasetError, match="none of the class folders"):
        load_covid_qu_ex(tmp_path / "Empty")


def test_mask_rasterisation_matches_truth(val_cases):
    case = next(c for c in val_cases if c.labels == ["COVID-19"])
    mask = case.findings()[0].to_mask((256, 256))
    assert mask.dtype == np.bool_
