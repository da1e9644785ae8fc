"""Generic manifest (CSV and JSON) on real COVID-QU-Ex files and on bad input."""

from __future__ import annotations

import json

import pytest

from cxrxai.datasets.manifest import load_manifest
from cxrxai.errors import DatasetError


def _covid_files(covid_root):
    folder = covid_root / "Val" / "COVID-19"
    name = sorted((folder / "images").iterdir())[0].name
    return folder / "images" / name, folder / "infection masks" / name


def test_csv_manifest_merges_rows(tmp_path, covid_root):
    image, mask = _covid_files(covid_root)
    (tmp_path / "m.csv").write_text(
        "image,labels,kind,label,author,x_min,y_min,x_max,y_max,mask,x,y,split\n"
        f"{image},COVID-19;Pneumonia,box,Opacity,R1,10,20,110,90,,,,val\n"
        f"{image},,mask,COVID-19,QaTa,,,,,{mask},,,val\n"
        f"{image},,point,Nodule,R2,,,,,,50,60,val\n"
        "relative/other.png,Normal,,,,,,,,,,,val\n"
    )
    first, second = load_manifest(tmp_path / "m.csv", covid_root.parent)  # files: data root
    assert first.labels == ["COVID-19", "Pneumonia", "Opacity", "Nodule"]
    kinds = [a.kind for a in first.annotations]
    assert kinds == ["box", "mask", "point"]
    assert first.annotations[0].box == (10.0, 20.0, 110.0, 90.0)
    assert first.annotations[1].load_mask().shape == first.load_image().shape
    assert second.image_path == tmp_path / "relative" / "other.png"
    assert second.labels == ["Normal"] and second.split == "val"


def test_json_manifest(tmp_path, covid_root):
    image, mask = _covid_files(covid_root)
    cases = {
        "cases": [
            {
                "image": str(image),
                "case_id": "c1",
                "labels": ["COVID-19"],
                "annotations": [
                    {"kind": "mask", "label": "COVID-19", "mask": str(mask)},
                    {"kind": "box", "label": "X", "box": [1, 2, 3, 4]},
                ],
            }
        ]
    }
    (tmp_path / "m.json").write_text(json.dumps(cases))
    (case,) = load_manifest(tmp_path / "m.json", covid_root.parent)
    assert case.case_id == "c1" and case.labels == ["COVID-19", "X"]
    assert case.annotations[0].load_mask().any()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("labels\nx\n", "needs an 'image' column"),
        ("image,kind,label\na.png,circle,X\n", "kind must be one of"),
        ("image,kind,label,x_min,y_min,x_max,y_max\na.png,box,X,5,5,1,1\n", "x_max < x_min"),
        ("image,kind,label,x_min,y_min,x_max,y_max\na.png,box,X,a,5,1,1\n", "must be a number"),
        ("image,kind,label\na.png,mask,X\n", "needs 'mask'"),
        ("image,kind,label\na.png,box,\n", "needs a 'label'"),
    ],
)
def test_bad_csv_rows_name_the_line(tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_manifest(tmp_path / "bad.csv")


def test_bad_json_and_suffix(tmp_path):
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(DatasetError, match="expected an object"):
        load_manifest(tmp_path / "bad.json")
    (tmp_path / "m.txt").write_text("")
    with pytest.raises(DatasetError, match=r"\.csv or \.json"):
        load_manifest(tmp_path / "m.txt")


HOSTILE_PATHS = {
    "parent folder": "../secret.png",
    "absolute": "/etc/passwd",
    "home": "~/.ssh/id_rsa",
    "dotted inside": "img/../../secret.png",
}


@pytest.mark.parametrize("where", ["image", "mask"])
@pytest.mark.parametrize("name", list(HOSTILE_PATHS))
def test_paths_leading_outside_are_refused(tmp_path, name, where):
    """A manifest's paths stay inside its folder and the data root: a handed-over
    manifest must not read the server's files."""
    folder = tmp_path / "study"
    folder.mkdir()
    value = HOSTILE_PATHS[name]
    image = value if where == "image" else "ok.png"
    mask = value if where == "mask" else "ok-mask.png"
    (folder / "m.csv").write_text(f"image,kind,label,mask\n{image},mask,Opacity,{mask}\n")
    with pytest.raises(
        DatasetError, match=r"leads outside the manifest's folder.*--manifest-anywhere"
    ):
        load_manifest(folder / "m.csv", tmp_path / "data")
    cases = load_manifest(folder / "m.csv", tmp_path / "data", anywhere=True)  # opted in
    assert len(cases) == 1


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    folder, elsewhere = tmp_path / "study", tmp_path / "elsewhere"
    folder.mkdir(), elsewhere.mkdir()
    (elsewhere / "x.png").write_bytes(b"")
    (folder / "link.png").symlink_to(elsewhere / "x.png")
    (folder / "m.csv").write_text("image\nlink.png\n")
    with pytest.raises(DatasetError, match="leads outside"):
        load_manifest(folder / "m.csv")
    (case,) = load_manifest(folder / "m.csv", data_root=elsewhere)  # inside the data root
    assert case.case_id == "m/link"


def test_case_ids_of_absolute_paths_have_no_double_slash(tmp_path):
    data, folder = tmp_path / "data", tmp_path / "manifests"
    (data / "a").mkdir(parents=True)
    folder.mkdir()
    (folder / "m.csv").write_text(f"image\n{data / 'a' / 'x.png'}\nimg/y.dcm\n")
    first, second = load_manifest(folder / "m.csv", data)
    assert first.case_id == "m/a/x" and second.case_id == "m/img/y"


def test_a_lungs_mask_is_anatomy_and_serves_within_lungs(tmp_path, covid_root):
    """role=lungs marks a mask as the lung fields: not a finding, not a label, and what
    --within-lungs and the lung share use (no prediction needed)."""
    from cxrxai.lungs import lung_annotation

    image, mask = _covid_files(covid_root)
    lungs = covid_root / "Val" / "COVID-19" / "lung masks" / image.name
    (tmp_path / "m.csv").write_text(
        "image,labels,kind,label,mask,role\n"
        f"{image},COVID-19,mask,COVID-19,{mask},\n"
        f"{image},,mask,,{lungs},lungs\n"
    )
    (case,) = load_manifest(tmp_path / "m.csv", covid_root.parent)
    assert case.labels == ["COVID-19"] and [a.label for a in case.findings()] == ["COVID-19"]
    anatomy = case.anatomy("lungs")
    assert anatomy is not None and anatomy.role == "anatomy" and not anatomy.predicted
    assert lung_annotation(case, case.load_image().pixels, None) is anatomy
    assert anatomy.load_mask().mean() > 0.1
    (tmp_path / "bad.csv").write_text(
        f"image,kind,role,x_min,y_min,x_max,y_max\n{image},box,lungs,1,1,5,5\n"
    )
    with pytest.raises(DatasetError, match="a 'lungs' annotation is a mask"):
        load_manifest(tmp_path / "bad.csv", covid_root.parent)
    (tmp_path / "odd.csv").write_text(f"image,kind,label,mask,role\n{image},mask,x,{mask},heart\n")
    with pytest.raises(DatasetError, match="role must be one of"):
        load_manifest(tmp_path / "odd.csv", covid_root.parent)
