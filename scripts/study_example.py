"""The worked example of docs/study-example.md: a small study whose ratings a script types
(TEST DATA, not clinicians' judgements), analysed the way Study admin and `study analyse`
analyse a real one. Run: .venv/bin/python scripts/study_example.py OUT_DIR

Every option of the study is on: 8 cases (3 on which the model is wrong: the MRMC
analysis, like iMRMC, counts a reader's reads from 3 cases of each truth), Grad-CAM and
LRP with a Grad-CAM sham, a practice case, the staged reveal, reader localisation, three
raters of different roles. The scripted raters trust the real maps more than the sham,
trust them less where the model is wrong, and grow more confident with explanations.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cxrxai.study import analysis, service  # noqa: E402
from cxrxai.study.db import connect  # noqa: E402

PASSWORD = "example password"
LABELS = ["COVID-19", "Non-COVID", "Normal"]


def build(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "example-study.sqlite"
    path.unlink(missing_ok=True)
    db = connect(path)
    service.set_admin_password(db, PASSWORD)
    # the model calls every case COVID-19: right on the five that are, wrong on three Normals
    cases = [
        service.CaseRef(f"covid-qu-ex/Val/{label}/example_{i}", "covid-qu-ex", "Val", label,
                        "COVID-19")
        for i, label in enumerate(["COVID-19"] * 5 + ["Normal"] * 3)
    ]  # fmt: skip
    practice = [service.CaseRef("covid-qu-ex/Val/Normal/example_p", "covid-qu-ex", "Val",
                                "Normal", "Normal")]  # fmt: skip
    code = service.create_study(
        db, PASSWORD, "Worked example (test data)", cases, ["gradcam", "lrp"], seed=1,
        practice=practice, shams=["gradcam"], staged=True, localise=True,
    )  # fmt: skip
    rng = np.random.default_rng(7)
    readers = [("Reader 1", "radiologist", 12), ("Reader 2", "resident", 3),
               ("Reader 3", "other clinician", 6)]  # fmt: skip
    for name, role, years in readers:
        rater = service.join(db, code, name, service.ReaderProfile(role, years, "occasionally"))
        while (task := service.next_assignment(db, rater)) is not None:
            right = task.case_id[-1] not in "567"  # the model is wrong on cases 5, 6 and 7
            service.record_image_read(db, rater, task.id, "COVID-19", LABELS,
                                      int(rng.integers(40, 70)))  # fmt: skip
            service.record_first_read(db, rater, task.id, right or rng.random() < 0.3,
                                      confidence=int(rng.integers(45, 75)))  # fmt: skip
            scores = {}
            for method, label in zip(task.methods, task.shown_as, strict=True):
                trust = 4 if right else 3
                trust -= 2 if method.startswith("sham:") else 0
                trust = int(np.clip(trust + rng.integers(-1, 2), 1, 5))
                scores[label] = {"trust": trust, "localisation": max(1, trust - 1),
                                 "usefulness": trust}  # fmt: skip
            ious = {m: float(rng.uniform(0.1, 0.5)) for m in task.methods}
            marks = service.Marks([(60.0, 50.0, 140.0, 200.0)], float(rng.uniform(0.2, 0.6)), ious)
            confidence = int(np.clip((70 if right else 50) + rng.integers(-20, 21), 0, 100))
            service.submit(db, rater, task.id, scores, right or rng.random() < 0.2,
                           explained_label="COVID-19", confidence=confidence,
                           marks=marks)  # fmt: skip
    study_id = service.study_by_code(db, code)["id"]
    analysis.export(db, study_id, out / "export")
    return out / "export"


if __name__ == "__main__":
    folder = build(Path(sys.argv[1] if len(sys.argv) > 1 else "results/study-example"))
    summary = json.loads((folder / "summary_by_method.json").read_text())
    print(json.dumps(summary, indent=1, default=str)[:6000])
