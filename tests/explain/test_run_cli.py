"""``python -m cxrxai explain``: maps (npz) and overlays (png) per method, via the cache."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cxrxai.cli import main
from cxrxai.render import heatmap_colours, overlay


@pytest.fixture()
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint(labels=("COVID-19", "Normal"), size=32)


def test_explain_writes_maps_and_overlays(tmp_path, checkpoint, monkeypatch, capsys):
    monkeypatch.setenv("CXRXAI_CACHE", str(tmp_path / "cache"))
    image = tmp_path / "chest.png"
    cv2.imwrite(str(image), (np.random.default_rng(0).random((50, 40)) * 255).astype(np.uint8))
    code = main(
        [
            "explain",
            str(image),
            "--checkpoint",
            str(checkpoint),
            "--methods",
            "gradcam,lime",
            "--target",
            "Normal",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    for method in ("gradcam", "lime"):
        with np.load(tmp_path / "out" / f"chest_{method}_Normal.npz") as data:
            assert data["values"].shape == (50, 40)
        png = cv2.imread(str(tmp_path / "out" / f"chest_{method}_Normal.png"))
        assert png.shape == (50, 40, 3)
    assert list((tmp_path / "cache").rglob("*.npz"))
    assert "gradcam" in capsys.readouterr().out


def test_unknown_method_is_a_clear_error(tmp_path, checkpoint, capsys):
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.zeros((8, 8), np.uint8))
    assert (
        main(
            [
                "explain",
                str(image),
                "--checkpoint",
                str(checkpoint),
                "--methods",
                "gradcam,psychic",
                "--no-cache",
            ]
        )
        == 2
    )
    assert "Unknown explanation method 'psychic'" in capsys.readouterr().err


def test_colours_and_overlay():
    signed = np.array([[-1.0, 0.0, 1.0]], np.float32)
    rgb = heatmap_colours(signed)
    assert rgb[0, 2, 0] > rgb[0, 2, 2] and rgb[0, 0, 2] > rgb[0, 0, 0]  # red +, blue -
    picture = overlay(np.zeros((1, 3), np.float32), signed, alpha=1.0)
    np.testing.assert_array_equal(picture, rgb)
    with pytest.raises(ValueError, match="differ in shape"):
        overlay(np.zeros((2, 3), np.float32), signed)
    with pytest.raises(ValueError, match="alpha"):
        overlay(np.zeros((1, 3), np.float32), signed, alpha=2.0)


def test_explain_a_folder_skips_a_broken_file(tmp_path, checkpoint, capsys):
    folder = tmp_path / "xrays"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg"):
        cv2.imwrite(str(folder / name), (rng.random((40, 30)) * 255).astype(np.uint8))
    (folder / "c.dcm").write_bytes(b"not a dicom")
    (folder / "notes.txt").write_text("not an image")  # not an image suffix: not listed
    out = tmp_path / "out"
    args = ["explain", str(folder), "--checkpoint", str(checkpoint), "--no-cache"]
    assert main([*args, "--out", str(out), "--target", "Normal"]) == 1
    err = capsys.readouterr().err
    assert "skipped:" in err and "c.dcm" in err and "1 of 3 image(s)" in err
    assert sorted(p.name for p in out.glob("*.npz")) == [
        "a_gradcam_Normal.npz",
        "b_gradcam_Normal.npz",
    ]


def test_explain_refuses_images_that_would_overwrite_each_other(tmp_path, checkpoint, capsys):
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "x.png"), np.zeros((8, 8), np.uint8))
    args = ["explain", str(tmp_path / "one" / "x.png"), str(tmp_path / "two" / "x.png")]
    assert main([*args, "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o")]) == 2
    assert "Several images are named x" in capsys.readouterr().err
    assert main(["explain", str(tmp_path / "nowhere"), "--checkpoint", str(checkpoint)]) == 2
    assert "'" + str(tmp_path / "nowhere") + "' does not exist" in capsys.readouterr().err


def test_dotted_names_keep_every_methods_maps(tmp_path, checkpoint, rg1_files, capsys):
    """A DICOM named by its UID and a variant with a dotted layer: each method's map and
    overlay in its own file, named by method and label (with_suffix cut such names at the
    last dot, and every map was written to one file)."""
    import shutil

    uid_name = tmp_path / "1.2.276.0.7230010.3.1.4.8323329.dcm"
    shutil.copy(rg1_files["RG1_UNCR"], uid_name)
    out = tmp_path / "out"
    args = ["explain", str(uid_name), "--checkpoint", str(checkpoint), "--no-cache"]
    args += ["--methods", "gradcam,gradcam++", "--target", "Normal", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    written = sorted(path.name for path in out.iterdir())
    stem = "1.2.276.0.7230010.3.1.4.8323329"
    assert written == [
        f"{stem}_gradcam++_Normal.npz",
        f"{stem}_gradcam++_Normal.png",
        f"{stem}_gradcam_Normal.npz",
        f"{stem}_gradcam_Normal.png",
        f"{stem}_lungs-predicted.png",
    ]
    with (
        np.load(out / f"{stem}_gradcam_Normal.npz") as a,
        np.load(out / f"{stem}_gradcam++_Normal.npz") as b,
    ):
        assert a["values"].shape == b["values"].shape == (1955, 1841)


def test_explain_outlines_the_predicted_lungs_and_reports_the_shares(
    tmp_path, checkpoint, rg1_files, monkeypatch, capsys
):
    """A real radiograph without a lung mask: the lung-field model's outline is written
    (named as predicted), kept in each map file, and each map's shares are printed."""
    monkeypatch.setenv("CXRXAI_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    args = ["explain", rg1_files["RG1_UNCR"], "--checkpoint", str(checkpoint)]
    assert main([*args, "--target", "Normal", "--out", str(out)]) == 0
    lungs = cv2.imread(str(out / "RG1_UNCR_lungs-predicted.png"), cv2.IMREAD_GRAYSCALE)
    assert lungs.shape == (1955, 1841) and set(np.unique(lungs)) == {0, 255}
    with np.load(out / "RG1_UNCR_gradcam_Normal.npz") as data:
        assert np.array_equal(data["lungs"], lungs > 0)
    printed = capsys.readouterr().out
    assert "% inside the lungs" in printed and "% in the border band" in printed
    bare = tmp_path / "bare"
    assert main([*args, "--target", "Normal", "--out", str(bare), "--no-lung-model"]) == 0
    assert not list(bare.glob("*lungs*"))
    assert "inside the lungs" not in capsys.readouterr().out
