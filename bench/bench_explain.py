"""Explanation speed on the demo checkpoint and real COVID-QU-Ex images, in one process.

For LIME and SHAP the floor is their model evaluations, so each is reported as
t(method with N evaluations) / t(N forward passes at the best batch size); LIME is also
run through the stock ``lime`` package on the same image with a batched classifier_fn.
Run: ``.venv/bin/python -m bench.bench_explain [--images 2]``; record in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from lime import lime_image

from cxrxai.checkpoint import load_checkpoint
from cxrxai.datasets.covidqu import load_covid_qu_ex
from cxrxai.explain import get_explainer
from cxrxai.explain.perturbation import batched_probabilities, input_image01, segmenter
from cxrxai.settings import DEMO_CHECKPOINT, data_root


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def forward_floor(bundle, image01: torch.Tensor, n: int) -> tuple[float, int]:
    """Seconds for n forward passes at the fastest batch size, and that batch size."""
    batch = image01.expand(n, -1, -1).contiguous()
    best = (float("inf"), 0)
    for size in (8, 16, 32, 64):
        seconds = min(
            timed(lambda s=size: batched_probabilities(bundle, batch, s)) for _ in range(2)
        )
        best = min(best, (seconds, size))
    return best


def bench_image(bundle, image: np.ndarray, record) -> None:
    """Every measurement for one image (each closure runs at once, inside timed)."""
    image01 = input_image01(bundle, bundle.preprocess(image))
    for name in ("gradcam", "gradcam++", "lrp"):
        get_explainer(name).explain(bundle, image, target=0)  # warm-up
        record(f"{name} s", timed(lambda n=name: get_explainer(n).explain(bundle, image, target=0)))

    floor_1000, size = forward_floor(bundle, image01, 1000)
    record("forward x1000 s (best batch)", floor_1000)
    record("best batch size", size)
    lime_s = timed(
        lambda: get_explainer("lime", num_samples=1000, batch_size=size).explain(
            bundle, image, target=0, seed=0
        )
    )
    record("cxrxai lime 1000 s", lime_s)
    record("cxrxai lime / forward floor", lime_s / floor_1000)

    image255 = np.repeat((image01.cpu().numpy() * 255.0)[:, :, None], 3, axis=2)

    def classifier(images: np.ndarray) -> np.ndarray:
        tensor = torch.from_numpy(images[..., 0] / 255.0).float()
        return batched_probabilities(bundle, tensor, size).cpu().numpy()

    stock = lime_image.LimeImageExplainer(random_state=0)
    stock_s = timed(
        lambda: stock.explain_instance(
            image255,
            classifier,
            labels=(0,),
            top_labels=None,
            num_samples=1000,
            batch_size=size,
            segmentation_fn=segmenter("quickshift", 0),
        )
    )
    record("stock lime 1000 s", stock_s)
    record("stock lime / forward floor", stock_s / floor_1000)

    floor_500 = floor_1000 / 2
    shap_s = timed(
        lambda: get_explainer("shap", max_evals=500, batch_size=size).explain(
            bundle, image, target=0
        )
    )
    record("cxrxai shap partition 500 s", shap_s)
    record("shap / forward floor(500)", shap_s / floor_500)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    bundle = load_checkpoint(DEMO_CHECKPOINT, device=args.device)
    print(
        f"{platform.machine()}, {torch.get_num_threads()} threads, device {bundle.device}, "
        f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}"
    )
    cases = [
        c for c in load_covid_qu_ex(data_root() / "covid-qu-ex" / "Val") if c.labels == ["COVID-19"]
    ][: args.images]
    rows: dict[str, list[float]] = {}

    def record(name: str, value: float) -> None:
        rows.setdefault(name, []).append(value)

    for case in cases:
        bench_image(bundle, case.load_image().pixels, record)

    print("| measurement | " + " | ".join(c.case_id.split("/")[-1] for c in cases) + " |")
    print("|---|" + "---|" * len(cases))
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join(f"{v:.3g}" for v in values) + " |")


if __name__ == "__main__":
    main()
