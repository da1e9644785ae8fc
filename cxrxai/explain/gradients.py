"""Noise-averaged and path-integrated gradient maps.

- ``smoothgrad-cam``: Grad-CAM averaged over n noisy copies of the image (the VinDr
  study: n = 50, noise sigma 10-20 % of the intensity range), batched through
  pytorch-grad-cam;
- ``smoothgrad``: SmoothGrad on the input (captum ``NoiseTunnel`` over ``Saliency``);
- ``integrated-gradients``: captum ``IntegratedGradients`` from a black image.

Noise is drawn from the explainer's seeded generator, so a seed gives the same map twice.
"""

from __future__ import annotations

import torch
from captum.attr import IntegratedGradients, NoiseTunnel, Saliency
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from cxrxai.explain.base import BATCH_SIZE, LAYER, SIGMA, Explainer, Setting
from cxrxai.explain.cam import check_layer, gradients_from
from cxrxai.runner import ModelBundle, intensity_std, normalised_value

NOISY_COPIES = Setting("n_samples", int, 50, "noisy copies averaged", minimum=1)


class SmoothGradCamExplainer(Explainer):
    name = "smoothgrad-cam"
    description = "Grad-CAM averaged over n noisy copies (VinDr study: n=50, sigma 10-20 %)"
    needs_gradients = True
    stochastic = True
    settings = (NOISY_COPIES, SIGMA, LAYER, BATCH_SIZE.but(default=16, optional=False))

    def check(self, bundle: ModelBundle) -> None:
        check_layer(bundle, self.layer)

    def attribute(
        self, bundle: ModelBundle, batch: torch.Tensor, index: int, generator: torch.Generator
    ) -> torch.Tensor:
        noise_std = intensity_std(bundle.card, self.sigma, bundle.device)
        with bundle.private_model() as model:  # the hooks stay off the shared network
            with gradients_from(model, self.layer or bundle.card.target_layer) as layer:
                return self._average(bundle, model, batch, index, generator, layer, noise_std)

    def _average(
        self,
        bundle: ModelBundle,
        model: torch.nn.Module,
        batch: torch.Tensor,
        index: int,
        generator: torch.Generator,
        layer: torch.nn.Module,
        noise_std: torch.Tensor,
    ) -> torch.Tensor:
        cam = GradCAM(model=model, target_layers=[layer])
        total = torch.zeros(batch.shape[-2:], device=bundle.device)
        try:
            done = 0
            while done < self.n_samples:
                size = min(self.batch_size, self.n_samples - done)
                noise = torch.randn((size, *batch.shape[1:]), generator=generator)
                noisy = batch.expand(size, -1, -1, -1) + noise.to(bundle.device) * noise_std
                maps = cam(input_tensor=noisy, targets=[ClassifierOutputTarget(index)] * size)
                total += torch.from_numpy(maps.sum(0)).to(bundle.device)
                done += size
        finally:
            cam.activations_and_grads.release()
        return total / self.n_samples


def _captum_map(attribution: torch.Tensor) -> torch.Tensor:
    """(1, C, h, w) attribution -> (h, w), channels summed."""
    return attribution[0].sum(0)


class SmoothGradExplainer(Explainer):
    name = "smoothgrad"
    description = "SmoothGrad: input-gradient magnitude averaged over noisy copies (captum)"
    needs_gradients = True
    stochastic = True
    settings = (NOISY_COPIES, SIGMA, BATCH_SIZE.but(default=16, optional=False))

    def attribute(
        self, bundle: ModelBundle, batch: torch.Tensor, index: int, generator: torch.Generator
    ) -> torch.Tensor:
        stdev = float(intensity_std(bundle.card, self.sigma, bundle.device).mean())
        tunnel = NoiseTunnel(Saliency(bundle.model))
        # captum draws its noise from the global RNG: fork it and seed from ours.
        devices = [bundle.device] if bundle.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            attribution = tunnel.attribute(
                batch.clone().requires_grad_(True),
                nt_type="smoothgrad",
                nt_samples=self.n_samples,
                nt_samples_batch_size=self.batch_size,
                stdevs=stdev,
                target=index,
            )
        return _captum_map(attribution)


class IntegratedGradientsExplainer(Explainer):
    name = "integrated-gradients"
    description = "Integrated Gradients from a black image (captum); signed"
    needs_gradients = True

    settings = (
        Setting("n_steps", int, 50, "steps of the path integral", minimum=2),
        BATCH_SIZE.but(default=16, optional=False),
    )

    def attribute(
        self, bundle: ModelBundle, batch: torch.Tensor, index: int, generator: torch.Generator
    ) -> torch.Tensor:
        black = normalised_value(bundle.card, 0.0, bundle.device).expand_as(batch)
        attribution = IntegratedGradients(bundle.model).attribute(
            batch,
            baselines=black,
            target=index,
            n_steps=self.n_steps,
            internal_batch_size=self.batch_size,
        )
        return _captum_map(attribution)


GRADIENT_EXPLAINERS: tuple[type[Explainer], ...] = (
    SmoothGradCamExplainer,
    SmoothGradExplainer,
    IntegratedGradientsExplainer,
)
