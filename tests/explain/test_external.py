"""Heatmaps computed elsewhere: every format read, hostile files refused (a pickle that
would run code never does), resized as CheXlocalize resizes, and scored exactly like the
project's own maps."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cxrxai.errors import CxrxaiError
from cxrxai.explain.external import ExternalMaps, load_chexlocalize_pickle, read_map

RNG = np.random.default_rng(0)
MAP = RNG.random((8, 12)).astype(np.float32)


def test_every_format(tmp_path):
    np.save(tmp_path / "a.npy", MAP)
    np.savez(tmp_path / "b.npz", map=MAP, other=np.zeros(3))
    np.savez(tmp_path / "c.npz", MAP)
    cv2.imwrite(str(tmp_path / "d.png"), (MAP * 65535).astype(np.uint16))
    cv2.imwrite(str(tmp_path / "e.png"), (MAP * 255).astype(np.uint8))
    record = {"map": torch.from_numpy(MAP)[None, None], "prob": torch.tensor(0.7),
              "task": "Edema", "gt": np.zeros((4, 4)), "cxr_dims": (320, 390)}  # fmt: skip
    (tmp_path / "f.pkl").write_bytes(pickle.dumps(record))
    for name, tolerance in [("a.npy", 0), ("b.npz", 0), ("c.npz", 0), ("d.png", 2e-5),
                            ("e.png", 4e-3), ("f.pkl", 0)]:  # fmt: skip
        assert np.allclose(read_map(tmp_path / name), MAP, atol=tolerance), name


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


@pytest.mark.parametrize(
    "content, message",
    [
        (pickle.dumps({"map": _RunsCode()}), "not a type a CheXlocalize map file holds"),
        (pickle.dumps([1, 2]), "holds no 'map'"),
        (b"\x80\x04garbage", "not a CheXlocalize map file"),
        (pickle.dumps({"map": "text"}), "a map is a 2-D array"),
    ],
)
def test_hostile_pickles_are_refused_unbuilt(tmp_path, monkeypatch, content, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.pkl").write_bytes(content)
    with pytest.raises(CxrxaiError, match=message):
        load_chexlocalize_pickle(tmp_path / "m.pkl")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((4, 4), np.nan, np.float32), "NaN or infinite"),
        (np.zeros(5, np.float32), "2-D array"),
        (np.array([["a", "b"]]), "holds numbers"),
    ],
)
def test_broken_maps_are_refused(tmp_path, array, message):
    np.save(tmp_path / "m.npy", array)
    with pytest.raises(CxrxaiError, match=message):
        read_map(tmp_path / "m.npy")
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CxrxaiError, match="could not be read"):  # object arrays: pickles
        read_map(tmp_path / "o.npy")


def test_a_declared_giant_is_refused_before_it_is_read(tmp_path):
    """A compressed map whose header declares 30000 x 30000 floats (3.6 GB inflated): the
    header is read, the array never."""
    import zipfile

    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1), np.float32))
    header["shape"] = (30000, 30000)
    with zipfile.ZipFile(tmp_path / "giant.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("map.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, header)
            member.write(b"\0" * 1024)
    with pytest.raises(CxrxaiError, match=r"declares an array of shape \(30000, 30000\)"):
        read_map(tmp_path / "giant.npz")


def test_found_by_label_folder_or_suffix_and_resized_like_chexlocalize(tmp_path):
    (tmp_path / "Edema").mkdir()
    np.save(tmp_path / "Edema" / "img1.npy", MAP)
    np.save(tmp_path / "img2_Edema.npy", MAP)
    maps = ExternalMaps(tmp_path, "theirs")
    heatmap = maps.heatmap(["img1"], "Edema", 3, (40, 60))
    expected = F.interpolate(torch.from_numpy(MAP)[None, None], size=(40, 60),
                             mode="bilinear", align_corners=False)[0, 0]  # fmt: skip
    assert torch.allclose(heatmap.values, expected) and heatmap.method == "theirs"
    assert heatmap.target_index == 3 and heatmap.target_label == "Edema"
    assert maps.heatmap(["img2"], "Edema", 0, (8, 12)) is not None
    assert maps.heatmap(["img3"], "Edema", 0, (8, 12)) is None
    with pytest.raises(CxrxaiError, match="letters, digits"):
        ExternalMaps(tmp_path, "../x")


def test_scored_exactly_like_the_projects_own_maps(covid_root, tmp_path, capsys):
    """Grad-CAM maps saved as files and brought back under another name give the same
    rows as Grad-CAM itself."""
    from cxrxai.checkpoint import load_checkpoint
    from cxrxai.cli import main
    from cxrxai.datasets.covidqu import load_covid_qu_ex
    from cxrxai.environment import DEMO_CHECKPOINT
    from cxrxai.evaluation.evaluate import DEFAULT_REGIONS
    from cxrxai.evaluation.store import LOCALISATION, open_results
    from cxrxai.explain import get_explainer

    demo = load_checkpoint(DEMO_CHECKPOINT, device="cpu")
    cases = [c for c in load_covid_qu_ex(covid_root / "Val") if c.labels == ["COVID-19"]][:2]
    folder = tmp_path / "maps"
    folder.mkdir()
    for case in cases[:1]:  # the second case's map is missing
        (heatmap,) = get_explainer("gradcam").explain(demo, case.load_image().pixels, "COVID-19")
        np.save(folder / f"{Path(case.image_path).stem}_COVID-19.npy", heatmap.numpy())
    db = tmp_path / "r.sqlite"
    args = ["evaluate", "--split", str(covid_root / "Val"), "--classes", "COVID-19", "--limit",
            "2", "--no-lung-model", "--db", str(db)]  # fmt: skip
    assert main([*args, "--heatmaps", str(folder), "--method-name", "their-gradcam"]) == 0
    printed = capsys.readouterr().out
    assert "1 map(s) not in" in printed and cases[1].case_id in printed
    assert main([*args, "--methods", "gradcam", "--no-cache"]) == 0
    rows = list(open_results(db)[LOCALISATION].rows_where("case_id = ?", [cases[0].case_id]))
    theirs = {(r["mode"], r["value"]): r for r in rows if r["method"] == "their-gradcam"}
    ours = {(r["mode"], r["value"]): r for r in rows if r["method"] == "gradcam"}
    assert theirs.keys() == ours.keys() and len(theirs) == len(DEFAULT_REGIONS)
    for key, row in ours.items():
        assert theirs[key]["iou"] == pytest.approx(row["iou"], abs=1e-6), key
        assert theirs[key]["hit"] == row["hit"]
    assert main([*args, "--method-name", "x"]) == 2  # a name without a folder
    assert "--heatmaps and --method-name go together" in capsys.readouterr().err
