"""CLI: user errors print one clear line and exit 2, never a traceback."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import sqlite_utils

from cxrxai.cli import main
from cxrxai.errors import CxrxaiError


def test_info_prints_metadata_without_identifiers(rg1_files, capsys):
    assert main(["info", rg1_files["RG1_UNCR"]]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["shape"] == [1955, 1841] and meta["photometric_interpretation"] == "MONOCHROME1"
    assert "PatientName" not in json.dumps(meta)


def test_bad_image_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Cannot read image") and str(bad) in err
    assert "Traceback" not in err


def test_bad_checkpoint_is_one_clear_line(tmp_path, capsys):
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.zeros((8, 8), np.uint8))
    assert main(["predict", str(image), "--checkpoint", str(tmp_path / "none")]) == 2
    assert "Checkpoint" in capsys.readouterr().err


def test_bad_dataset_is_one_clear_line(capsys):
    """With a checkpoint that loads, so the error is the dataset's."""
    from cxrxai.environment import DEMO_CHECKPOINT

    code = main(["evaluate-model", "--checkpoint", str(DEMO_CHECKPOINT), "--dataset", "mnist"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Unknown dataset 'mnist'") and len(err.splitlines()) == 1


def test_precompute_demo_fills_the_cache_once(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CXRXAI_CACHE", str(tmp_path / "cache"))
    demo_db = tmp_path / "demo.sqlite"
    monkeypatch.setattr("cxrxai.environment.demo_results_path", lambda: demo_db)
    args = ["precompute-demo", "--methods", "gradcam", "--data-root", str(tmp_path / "none")]
    assert main(args) == 0  # no data: the sample DICOM case
    out = capsys.readouterr().out
    assert "1 explanation(s) computed" in out
    # the sample DICOM has no label of the demo model: nothing to score, no database
    assert "no demo case has a label" in out and not demo_db.exists()
    assert main(args) == 0
    assert "0 explanation(s) computed" in capsys.readouterr().out


def test_precompute_demo_scores_the_demo_cases_for_the_cases_page(
    covid_root, monkeypatch, tmp_path, capsys
):
    from cxrxai.evaluation import browse
    from cxrxai.evaluation.store import LOCALISATION, open_results

    monkeypatch.setenv("CXRXAI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CXRXAI_RESULTS", str(tmp_path / "none.sqlite"))
    demo_db = tmp_path / "demo.sqlite"
    monkeypatch.setattr("cxrxai.environment.demo_results_path", lambda: demo_db)
    assert browse.results_to_browse() == (None, False)
    args = ["precompute-demo", "--methods", "gradcam", "--data-root", str(covid_root.parent)]
    assert main(args) == 0
    assert "Demo evaluation: 8 case x method unit(s) scored" in capsys.readouterr().out
    assert browse.results_to_browse() == (demo_db, True)
    db = open_results(demo_db)
    rows = browse.filtered_rows(db, browse.Filters(classes=("COVID-19",)))
    assert len(rows) == 4 and all(r["iou"] is not None for r in rows)  # infection masks
    assert {r["split"] for r in db[LOCALISATION].rows} == {"Val"}
    assert main(args) == 0  # resumes: nothing scored twice
    assert "0 case x method unit(s) scored, 8 already" in capsys.readouterr().out
    # a batch evaluation, once it exists, takes the page over
    (tmp_path / "none.sqlite").write_bytes(demo_db.read_bytes())
    assert browse.results_to_browse() == (tmp_path / "none.sqlite", False)


def test_method_lists_split_outside_parentheses_and_variants_only_where_allowed():
    from cxrxai.cli.common import parse_methods as _methods

    text = "gradcam, gradcam(layer=blocks.6),shap(n_samples=100, masker=blur(8,8)),"
    assert _methods(text, variants=True) == [
        "gradcam",
        "gradcam(layer=blocks.6)",
        "shap(n_samples=100, masker=blur(8,8))",
    ]
    with pytest.raises(CxrxaiError, match=r"--param gradcam\.layer=blocks\.6"):
        _methods("gradcam(layer=blocks.6)")


def test_predict_warns_of_an_image_that_is_no_chest_radiograph(tmp_path, rg1_files, capsys):
    import cv2
    import skimage.data

    photo = tmp_path / "coffee.png"
    cv2.imwrite(str(photo), skimage.data.coffee()[:, :, ::-1])
    assert main(["predict", str(photo)]) == 0
    printed = capsys.readouterr()
    assert "COVID-19" in printed.out  # the probabilities are still printed
    assert "coffee.png: This may not be a frontal chest radiograph" in printed.err
    assert main(["predict", rg1_files["RG1_UNCR"]]) == 0
    assert "frontal chest" not in capsys.readouterr().err
    assert main(["predict", str(photo), "--no-lung-model"]) == 0
    assert capsys.readouterr().err == ""


def test_evaluate_a_random_sample_per_class(covid_root, tmp_path, capsys):
    """--sample N --seed S: a random N per class, the same again with the same seed."""
    from cxrxai.evaluation.store import LOCALISATION, open_results

    args = ["evaluate", "--split", str(covid_root / "Val"), "--methods", "gradcam"]
    args += ["--sample", "2", "--seed", "7", "--no-cache", "--no-lung-model"]
    assert main([*args, "--db", str(tmp_path / "a.sqlite")]) == 0
    assert "6 case x method units computed" in capsys.readouterr().out  # 2 x 3 classes
    assert main([*args, "--db", str(tmp_path / "b.sqlite")]) == 0
    ids = [
        sorted({r["case_id"] for r in open_results(tmp_path / name)[LOCALISATION].rows})
        for name in ("a.sqlite", "b.sqlite")
    ]
    assert ids[0] == ids[1] and len(ids[0]) == 6
    first = ["evaluate", "--split", str(covid_root / "Val"), "--methods", "gradcam", "--limit"]
    first += ["2", "--no-cache", "--no-lung-model", "--db", str(tmp_path / "c.sqlite")]
    assert main(first) == 0
    limited = sorted({r["case_id"] for r in open_results(tmp_path / "c.sqlite")[LOCALISATION].rows})
    assert limited != ids[0]  # a sample, not the first two files of each class


def test_shards_merged_equal_one_run(covid_root, tmp_path, capsys):
    common = ["evaluate", "--limit", "2", "--methods", "gradcam", "--no-lung-model",
              "--no-cache", "--data-root", str(covid_root.parent)]  # fmt: skip
    assert main([*common, "--db", str(tmp_path / "all.sqlite")]) == 0
    for k in (1, 2):
        assert main([*common, "--shard", f"{k}/2", "--db", str(tmp_path / f"s{k}.sqlite")]) == 0
    shards = [str(tmp_path / "s1.sqlite"), str(tmp_path / "s2.sqlite")]
    assert main(["merge-results", str(tmp_path / "merged.sqlite"), *shards]) == 0
    assert "run row(s) added" in capsys.readouterr().out
    query = "select * from localisation order by case_id, mode, value"
    one = sqlite_utils.Database(tmp_path / "all.sqlite").execute(query).fetchall()
    merged = sqlite_utils.Database(tmp_path / "merged.sqlite").execute(query).fetchall()
    assert len(one) == 6 * 9 and one == merged
    assert main(["merge-results", str(tmp_path / "m.sqlite"), str(tmp_path / "none.sqlite")]) == 2
    assert "none.sqlite" in capsys.readouterr().err


def test_precompute_demo_stops_between_maps(monkeypatch, tmp_path):
    """A background job is asked before each map, not each case: LIME or SHAP on a
    loaded machine take minutes, which an ended dashboard should not pay for."""
    from cxrxai.demo import precompute_demo

    monkeypatch.setenv("CXRXAI_CACHE", str(tmp_path / "cache"))
    answers = iter([True, False])
    count = precompute_demo(("gradcam", "lrp"), tmp_path / "none", keep_going=lambda: next(answers))
    assert count == 1  # the sample DICOM's Grad-CAM; its LRP never started
