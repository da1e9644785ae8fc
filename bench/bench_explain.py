"""Explanation speed on the demo checkpoint and real COVID-QU-Ex images, in one process.

What it prints (one column per image):
- the floor: N forward passes at the best batch size (inference mode, channels-last; bf16
  autocast too on a GPU), and one forward+backward pass;
- cxrxai's LIME (1000 samples) and SHAP Partition (500 evals) over that floor, and the
  seconds beyond it (the CPU work that stays when the model is fast); LIME's time by
  phase (segmentation, model evaluations, surrogate fit, rest);
- LIME's quickshift segmentation: cxrxai's (all cores) against scikit-image's;
- LIME and SHAP with a free model (a linear read-out of the input), cxrxai against the
  stock pipelines: their own CPU work, which a GPU does not speed up;
- Grad-CAM and LRP over one forward+backward;
- speed-ups against the reference pipelines on identical settings: stock
  ``LimeImageExplainer.explain_instance`` (its defaults: batch_size 10, scikit-image's
  quickshift; a plain classifier_fn),
  stock ``shap`` Partition (its default batch size, a plain predict function) and stock
  pytorch-grad-cam (a plainly loaded model, full backward, NumPy round trip); each with the
  Spearman correlation and largest difference between the two maps;
- with ``torch.compile`` (``--compile``): the forward floor, LIME and SHAP, their speed-up
  against the same stock pipelines and their maps against the eager ones;
- on a GPU: bf16 autocast against fp32 (time, Spearman of the maps) and the four methods
  (Grad-CAM, LIME 1000, SHAP 500, LRP) for one image.

Eager LIME and SHAP, ours and stock, are timed best of 2 like the floor; the compiled,
bf16 and four-method rows once (or best of 3).

Run: ``.venv/bin/python -m bench.bench_explain [--images 2] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import copy
import platform
import time
from collections import defaultdict
from collections.abc import Callable
from unittest import mock

import numpy as np
import shap
import torch
from lime import lime_image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from scipy.stats import spearmanr
from skimage.segmentation import quickshift as skimage_quickshift

from cxrxai.checkpoint import load_checkpoint
from cxrxai.datasets.covidqu import load_covid_qu_ex
from cxrxai.environment import DEMO_CHECKPOINT, data_root
from cxrxai.explain import get_explainer
from cxrxai.explain.cam import find_layer
from cxrxai.explain.perturbation import segmenter
from cxrxai.metrics.regions import top_percent
from cxrxai.runner import ModelBundle, batched_probabilities, input_image01, normalise

Record = Callable[[str, float], None]
QUICKSHIFT = {"kernel_size": 4, "max_dist": 200, "ratio": 0.2}  # lime's defaults


def timed(fn: Callable[[], object], repeats: int = 1) -> float:
    """Best of ``repeats`` wall-clock runs, synchronising the GPU."""
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(spearmanr(np.ravel(a), np.ravel(b)).statistic)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def top10_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of the two maps' top-10 % regions (what the localisation metrics see)."""
    ra = top_percent(torch.as_tensor(np.asarray(a, np.float32)), 10)
    rb = top_percent(torch.as_tensor(np.asarray(b, np.float32)), 10)
    return float((ra & rb).sum() / (ra | rb).sum())


def compare(record: Record, what: str, a: np.ndarray, b: np.ndarray) -> None:
    record(f"{what} Spearman", spearman(a, b))
    record(f"{what} Pearson", pearson(a, b))
    record(f"{what} top-10% IoU", top10_iou(a, b))


def forward_floor(bundle: ModelBundle, image01: torch.Tensor, n: int) -> tuple[float, int]:
    """Seconds for n forward passes at the fastest batch size, and that batch size."""
    batch = image01.expand(n, -1, -1).contiguous()
    sizes = (8, 16, 32) if bundle.device.type == "cpu" else (64, 128, 256, 512, 1000)
    best = (float("inf"), 0)
    for size in sizes:
        batched_probabilities(bundle, batch[:size], size)  # warm-up at this shape
        seconds = timed(lambda s=size: batched_probabilities(bundle, batch, s), repeats=2)
        best = min(best, (seconds, size))
    return best


def plain_model(bundle: ModelBundle) -> torch.nn.Module:
    """The network as a user would load it: trainable weights, default memory format."""
    model = copy.deepcopy(bundle.model).requires_grad_(True)
    return model.to(memory_format=torch.contiguous_format).eval()


def free_model(bundle: ModelBundle) -> tuple[ModelBundle, np.ndarray]:
    """The bundle with its network swapped for a fixed linear read-out of the input
    (microseconds per image), and that read-out's (labels, h*w) weights for the stock
    pipelines. What LIME and SHAP then cost is their own CPU work: the part that stays
    when a GPU makes the model nearly free."""
    height, width = bundle.card.input_size
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(len(bundle.labels), height, width, generator=generator)
    weights = weights / (height * width)
    free = copy.copy(bundle)
    on_device = weights.to(bundle.device)
    free.forward_batch = lambda batch, full: torch.einsum(  # type: ignore[method-assign]
        "bchw,khw->bk", batch.float(), on_device
    )
    return free, weights.reshape(len(bundle.labels), -1).numpy()


def lime_phases(bundle: ModelBundle, image: np.ndarray, target: int, batch_size: int) -> dict:
    """Where one LIME 1000 map's time goes: segmentation, model evaluations (composition,
    normalisation, forward), lime's surrogate fit, and the rest; the GPU is synchronised
    around each phase. On the H100, LIME once took 0.3-0.5 s more than its floor and its
    segmentation explained (docs/benchmarks.md): this says where."""
    import lime.lime_base

    from cxrxai.explain import perturbation

    spent: dict[str, float] = defaultdict(float)

    def clocked(name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            spent[name] += time.perf_counter() - start
            return out

        return wrapper

    explainer = get_explainer("lime", n_samples=1000, batch_size=batch_size)
    base = lime.lime_base.LimeBase
    segment = clocked("segmentation", perturbation.quickshift)
    evaluate = clocked("model evaluations", perturbation.batched_probabilities)
    fit = clocked("fit", base.explain_instance_with_data)
    with (
        mock.patch.object(perturbation, "quickshift", segment),
        mock.patch.object(perturbation, "batched_probabilities", evaluate),
        mock.patch.object(base, "explain_instance_with_data", fit),
    ):
        total = timed(lambda: explainer.explain(bundle, image, target=target, seed=0))
    phases = {name: seconds for name, seconds in spent.items()}
    phases["rest"] = total - sum(phases.values())
    return phases


def bench_cpu_work(bundle: ModelBundle, image: np.ndarray, target: int, record: Record) -> None:
    """LIME 1000 and SHAP 500 with a free model, cxrxai against the stock pipelines."""
    free, weights = free_model(bundle)
    image01 = input_image01(bundle, bundle.preprocess(image)).cpu().numpy()
    image255 = np.repeat((image01 * 255.0).astype(np.float64)[:, :, None], 3, axis=2)

    def stock_lime() -> None:
        def classifier_fn(images: np.ndarray) -> np.ndarray:
            return (images[..., 0] / 255.0).reshape(len(images), -1) @ weights.T

        lime_image.LimeImageExplainer(kernel_width=0.25, random_state=0).explain_instance(
            image255, classifier_fn, labels=(target,), top_labels=None, num_samples=1000,
            random_seed=0,
        )  # fmt: skip

    masker = shap.maskers.Image("blur(16,16)", (*image01.shape, 1))

    def stock_shap() -> None:
        def predict(images: np.ndarray) -> np.ndarray:
            return images.reshape(len(images), -1) @ weights[target : target + 1].T

        shap.Explainer(predict, masker, algorithm="partition")(
            image01[None, :, :, None], max_evals=500, silent=True
        )

    lime = get_explainer("lime", n_samples=1000, batch_size=256)
    shap_ours = get_explainer("shap", n_samples=500, batch_size=256)
    for name, ours, stock in (
        ("lime 1000", lambda: lime.explain(free, image, target=target), stock_lime),
        ("shap 500", lambda: shap_ours.explain(free, image, target=target), stock_shap),
    ):
        ours()
        stock()
        ours_s, stock_s = timed(ours, repeats=3), timed(stock, repeats=3)
        record(f"free model: cxrxai {name} s", ours_s)
        record(f"free model: stock {name} s", stock_s)
        record(f"free model: {name} stock / cxrxai", stock_s / ours_s)


def bench_image(
    bundle: ModelBundle, compiled: ModelBundle, image: np.ndarray, record: Record
) -> None:
    """Every measurement for one image (each closure runs at once, inside timed)."""
    image01 = input_image01(bundle, bundle.preprocess(image))
    batch = bundle.preprocess(image)
    reference = plain_model(bundle)
    target = int(bundle.predict_proba(image)[0].argmax())

    def forward_backward() -> None:
        inputs = batch.clone().requires_grad_(True)
        reference(inputs)[0, target].backward()

    forward_backward()
    fb = timed(forward_backward, repeats=5)
    record("forward+backward s", fb)
    maps: dict[str, np.ndarray] = {}
    seconds_of: dict[str, float] = {}
    for name in ("gradcam", "lrp"):
        explainer = get_explainer(name)
        explainer.explain(bundle, image, target=target)  # warm-up
        seconds = timed(lambda e=explainer: e.explain(bundle, image, target=target), repeats=5)
        maps[name] = explainer.explain(bundle, image, target=target)[0].numpy()
        seconds_of[name] = seconds
        record(f"{name} s", seconds)
        record(f"{name} / forward+backward", seconds / fb)

    layer = find_layer(reference, bundle.card.target_layer)

    def stock_gradcam() -> np.ndarray:
        cam = GradCAM(model=reference, target_layers=[layer])
        try:
            return cam(input_tensor=batch, targets=[ClassifierOutputTarget(target)])[0]
        finally:
            cam.activations_and_grads.release()

    stock_gradcam()
    stock_s = timed(stock_gradcam, repeats=5)
    ours = get_explainer("gradcam").attribute(bundle, batch, target, torch.Generator())
    record("stock pytorch-grad-cam s", stock_s)
    record("speed-up vs stock grad-cam", stock_s / seconds_of["gradcam"])
    difference = np.abs(ours.cpu().numpy() - stock_gradcam()).max()
    record("grad-cam max |diff| vs stock", float(difference))

    bench_cpu_work(bundle, image, target, record)
    floor_1000, size = forward_floor(bundle, image01, 1000)
    record("forward x1000 s (best batch)", floor_1000)
    record("best batch size", size)
    lime = get_explainer("lime", n_samples=1000, batch_size=size)
    lime_s = timed(lambda: lime.explain(bundle, image, target=target, seed=0), repeats=2)
    maps["lime"] = lime.explain(bundle, image, target=target, seed=0)[0].numpy()
    record("cxrxai lime 1000 s", lime_s)
    record("lime / forward floor", lime_s / floor_1000)
    record("lime - forward floor s", lime_s - floor_1000)
    for phase, seconds in lime_phases(bundle, image, target, size).items():
        record(f"lime phase: {phase} s", seconds)

    rgb255 = np.repeat((image01.cpu().numpy() * 255.0).astype(np.float64)[:, :, None], 3, axis=2)
    superpixels = segmenter("quickshift")
    labels = superpixels(rgb255)
    record("quickshift s (cxrxai, all cores)", timed(lambda: superpixels(rgb255), repeats=3))
    stock_qs = timed(lambda: skimage_quickshift(rgb255, **QUICKSHIFT), repeats=3)
    record("quickshift s (scikit-image)", stock_qs)
    record(
        "quickshift labels identical",
        float(np.array_equal(labels, skimage_quickshift(rgb255, **QUICKSHIFT))),
    )

    @torch.no_grad()
    def classifier_fn(images: np.ndarray) -> np.ndarray:
        """A plain LIME classifier_fn: NumPy RGB 0-255 -> probabilities."""
        tensor = torch.from_numpy(images[..., :1].transpose(0, 3, 1, 2) / 255.0).float()
        logits = reference(normalise(tensor.to(bundle.device), bundle.card))
        return bundle.probabilities(logits).cpu().numpy()

    image255 = (image01.cpu().numpy() * 255.0).astype(np.float64)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=torch.Generator().manual_seed(0)))

    def stock_lime():
        return lime_image.LimeImageExplainer(kernel_width=0.25, random_state=seed).explain_instance(
            np.repeat(image255[:, :, None], 3, axis=2),
            classifier_fn,
            labels=(target,),
            top_labels=None,
            num_samples=1000,
            random_seed=seed,  # lime's default segmentation: scikit-image's quickshift
        )

    stock_lime_s = timed(stock_lime, repeats=2)
    explanation = stock_lime()
    weights = dict(explanation.local_exp[target])
    stock_map = np.vectorize(lambda s: weights.get(s, 0.0))(explanation.segments)
    ours_lime = lime.attribute(bundle, batch, target, torch.Generator().manual_seed(0))
    record("stock lime 1000 s (batch 10)", stock_lime_s)
    record("speed-up vs stock lime", stock_lime_s / lime_s)
    compare(record, "lime vs stock:", ours_lime.cpu().numpy(), stock_map)

    floor_500, size_500 = forward_floor(bundle, image01, 500)
    shap_ours = get_explainer("shap", n_samples=500, batch_size=size_500)
    get_explainer("shap", n_samples=50).explain(bundle, image, target=target)  # numba JIT
    shap_s = timed(lambda: shap_ours.explain(bundle, image, target=target), repeats=2)
    maps["shap"] = shap_ours.explain(bundle, image, target=target)[0].numpy()
    record("cxrxai shap partition 500 s", shap_s)
    record("shap / forward floor(500)", shap_s / floor_500)
    record("shap - forward floor(500) s", shap_s - floor_500)

    def predict(images: np.ndarray) -> np.ndarray:
        """A plain shap predict function: NumPy (N, h, w, 1) in [0, 1] -> P(target)."""
        with torch.no_grad():
            tensor = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
            logits = reference(normalise(tensor.float().to(bundle.device), bundle.card))
            return bundle.probabilities(logits)[:, target : target + 1].cpu().numpy()

    image_hw1 = image01.cpu().numpy()[:, :, None].astype(np.float32)
    masker = shap.maskers.Image("blur(16,16)", image_hw1.shape)

    def stock_shap() -> np.ndarray:
        explainer = shap.Explainer(predict, masker, algorithm="partition")
        return explainer(image_hw1[None], max_evals=500, silent=True).values[0, :, :, 0, 0]

    stock_shap_s = timed(stock_shap, repeats=2)
    ours_shap = shap_ours.attribute(bundle, batch, target, torch.Generator())
    record("stock shap partition 500 s", stock_shap_s)
    record("speed-up vs stock shap", stock_shap_s / shap_s)
    compare(record, "shap vs stock:", ours_shap.cpu().numpy(), stock_shap())

    # torch.compile (--compile): the floor at the best batch size, LIME and SHAP on it, the
    # speed-up against the same stock pipelines, and the maps against the eager ones.
    compiled_floor = timed(
        lambda: batched_probabilities(compiled, image01.expand(1000, -1, -1), size)
    )
    record("compiled: forward x1000 s", compiled_floor)
    for name, params, batch_size, stock_s, eager_map in (
        ("lime", {"n_samples": 1000}, size, stock_lime_s, maps["lime"]),
        ("shap", {"n_samples": 500}, size_500, stock_shap_s, maps["shap"]),
    ):
        explainer = get_explainer(name, batch_size=batch_size, **params)
        seconds = timed(lambda e=explainer: e.explain(compiled, image, target=target, seed=0))
        (fast,) = explainer.explain(compiled, image, target=target, seed=0)
        record(f"compiled: {name} s", seconds)
        record(f"compiled: speed-up vs stock {name}", stock_s / seconds)
        compare(record, f"compiled {name} vs eager:", eager_map, fast.numpy())

    if bundle.device.type == "cuda":
        bf16 = copy.copy(bundle)
        bf16.precision = "bf16"
        for name, params in (("lime", {"n_samples": 1000}), ("shap", {"n_samples": 500})):
            explainer = get_explainer(name, **params)
            explainer.explain(bf16, image, target=target, seed=0)  # warm-up
            seconds = timed(lambda e=explainer: e.explain(bf16, image, target=target, seed=0))
            (fast,) = explainer.explain(bf16, image, target=target, seed=0)
            record(f"{name} bf16 s", seconds)
            compare(record, f"{name} bf16 vs fp32:", maps[name], fast.numpy())
        slic = get_explainer("lime", n_samples=1000, segmentation="slic")
        slic.explain(bundle, image, target=target)
        record("lime 1000 (SLIC) s", timed(lambda: slic.explain(bundle, image, target=target)))
        four = (
            get_explainer("gradcam"),
            get_explainer("lime", n_samples=1000),
            get_explainer("shap", n_samples=500),
            get_explainer("lrp"),
        )
        record(
            "gradcam+lime+shap+lrp s",
            timed(lambda: [e.explain(bundle, image, target=target) for e in four], repeats=3),
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    bundle = load_checkpoint(DEMO_CHECKPOINT, device=args.device)
    name = torch.cuda.get_device_name() if bundle.device.type == "cuda" else platform.processor()
    print(
        f"{platform.machine()} {name}, {torch.get_num_threads()} threads, device "
        f"{bundle.device}, precision {bundle.precision}, torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d')}"
    )
    cases = [
        c for c in load_covid_qu_ex(data_root() / "covid-qu-ex" / "Val") if c.labels == ["COVID-19"]
    ][: args.images]
    rows: dict[str, list[float]] = {}

    def record(name: str, value: float) -> None:
        rows.setdefault(name, []).append(value)
        print(f"  {name}: {value:.4g}", flush=True)

    compiled = load_checkpoint(DEMO_CHECKPOINT, device=args.device, compile=True)
    # compile once for every batch size used below (static shapes), outside the timings
    for size in {8, 16, 32} if compiled.device.type == "cpu" else {64, 128, 256, 512, 1000}:
        batched_probabilities(compiled, torch.rand(size, *compiled.card.input_size), size)
    for case in cases:
        bench_image(bundle, compiled, case.load_image().pixels, record)

    print("| measurement | " + " | ".join(c.case_id.split("/")[-1] for c in cases) + " |")
    print("|---|" + "---|" * len(cases))
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join(f"{v:.3g}" for v in values) + " |")


if __name__ == "__main__":
    main()
