"""The dashboard shares one model bundle between sessions' threads: methods that hook or
canonize the network work on the bundle's private copy, never on ``bundle.model``."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from cxrxai.checkpoint import load_checkpoint
from cxrxai.explain import get_explainer


def hook_count(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
        for m in model.modules()
    )


@pytest.fixture()
def bundle(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint(size=48), device="cpu")


@pytest.fixture()
def image():
    return np.random.default_rng(0).random((48, 48), dtype=np.float32)


@pytest.mark.parametrize("method", ["gradcam", "smoothgrad-cam", "lrp"])
def test_shared_network_has_no_hooks_while_a_method_runs(bundle, image, method, monkeypatch):
    """Seen from inside the backward pass: the shared network is hook-free and unchanged
    (LRP merges BatchNorm into the weights of the copy it runs on)."""
    weights = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    seen: list[int] = []
    grad = torch.autograd.grad
    backward = torch.Tensor.backward

    def checking_grad(*args, **kwargs):
        seen.append(hook_count(bundle.model))
        return grad(*args, **kwargs)

    def checking_backward(self, *args, **kwargs):
        seen.append(hook_count(bundle.model))
        return backward(self, *args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", checking_grad)
    monkeypatch.setattr(torch.Tensor, "backward", checking_backward)
    get_explainer(method).explain(bundle, image, target=1)
    assert seen and set(seen) == {0}
    for name, value in bundle.model.state_dict().items():
        torch.testing.assert_close(value, weights[name], rtol=0, atol=0)


def test_concurrent_methods_give_their_serial_maps(bundle, image):
    """LRP in one thread, Grad-CAM and Saliency in another, on one bundle."""
    methods = {name: get_explainer(name) for name in ("lrp", "gradcam", "smoothgrad")}
    expected = {name: e.explain(bundle, image, target=1)[0].numpy() for name, e in methods.items()}
    failures: list[str] = []

    def repeat(name: str) -> None:
        for _ in range(8):
            got = methods[name].explain(bundle, image, target=1)[0].numpy()
            if not np.allclose(got, expected[name], rtol=1e-5, atol=1e-6):
                failures.append(name)

    threads = [threading.Thread(target=repeat, args=(name,)) for name in methods]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_private_copy_is_reused_renewed_and_taken_in_turns(bundle):
    with bundle.private_model() as first:
        assert first is not bundle.model
    with bundle.private_model() as again:
        assert again is first
    with torch.no_grad():
        bundle.model.fc.bias.add_(1.0)  # an in-place change (the sanity check does this)
    with bundle.private_model() as renewed:
        assert renewed is not first
        torch.testing.assert_close(renewed.fc.bias, bundle.model.fc.bias)

    entered = threading.Event()

    def second_caller() -> None:
        with bundle.private_model():
            entered.set()

    with bundle.private_model():
        thread = threading.Thread(target=second_caller)
        thread.start()
        assert not entered.wait(0.2)  # the second caller waits for the first
    thread.join(5)
    assert entered.is_set()


def test_prepared_copies_are_prepared_once_and_kept_apart(bundle):
    prepared: list[torch.nn.Module] = []

    def prepare(model: torch.nn.Module) -> None:
        prepared.append(model)
        with torch.no_grad():
            model.fc.bias.zero_()

    with bundle.private_model(prepare=prepare) as first:
        assert prepared == [first] and float(first.fc.bias.abs().sum()) == 0.0
    with bundle.private_model(prepare=prepare) as again:
        assert again is first and len(prepared) == 1
    with bundle.private_model() as plain:
        assert plain is not first
        torch.testing.assert_close(plain.fc.bias, bundle.model.fc.bias)
    with torch.no_grad():
        bundle.model.fc.weight.mul_(2.0)
    with bundle.private_model(prepare=prepare) as renewed:
        assert renewed is not first and prepared == [first, renewed]
        torch.testing.assert_close(renewed.fc.weight, bundle.model.fc.weight)
