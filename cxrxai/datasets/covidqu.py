"""COVID-QU-Ex "Infection Segmentation Data" folder layout.

    <root>/<Split>/<Class>/{images,infection masks,lung masks}/<name>.png

The class comes from the folder; each case carries its infection mask (empty for the
Non-COVID and Normal negative controls) as a finding and its lung mask as anatomy.
"""

from __future__ import annotations

from pathlib import Path

from cxrxai.cases import Annotation, Case
from cxrxai.errors import DatasetError

CLASSES: tuple[str, ...] = ("COVID-19", "Non-COVID", "Normal")
INFECTION_LABEL = "COVID-19"
MASK_AUTHOR = "QaTa-COV19"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def load_covid_qu_ex(split_dir: Path | str, dataset: str = "covid-qu-ex") -> list[Case]:
    """All cases of one split folder (e.g. ``.../covid-qu-ex/Val``), sorted by id.

    Any split path works (Train, Val, the public Test), as long as it has the layout above.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DatasetError(
            f"COVID-QU-Ex split folder '{split_dir}' not found. Point --data-root / "
            "$CXRXAI_DATA at the folder holding covid-qu-ex/, or pass the split folder itself."
        )
    classes = [c for c in CLASSES if (split_dir / c / "images").is_dir()]
    if not classes:
        raise DatasetError(
            f"'{split_dir}' has none of the class folders {list(CLASSES)} with an 'images' "
            "subfolder; is this a COVID-QU-Ex split folder (Train, Val or Test)?"
        )
    cases: list[Case] = []
    for class_name in classes:
        class_dir = split_dir / class_name
        for image_path in sorted((class_dir / "images").iterdir()):
            if image_path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            annotations = []
            infection = class_dir / "infection masks" / image_path.name
            if infection.is_file():
                annotations.append(
                    Annotation("mask", INFECTION_LABEL, MASK_AUTHOR, mask_path=infection)
                )
            lungs = class_dir / "lung masks" / image_path.name
            if lungs.is_file():
                annotations.append(
                    Annotation("mask", "lungs", MASK_AUTHOR, role="anatomy", mask_path=lungs)
                )
            cases.append(
                Case(
                    case_id=f"{dataset}/{split_dir.name}/{class_name}/{image_path.stem}",
                    image_path=image_path,
                    labels=[class_name],
                    annotations=annotations,
                    dataset=dataset,
                    split=split_dir.name,
                )
            )
    return cases
