"""The private pieces of other libraries the project relies on (cxrxai/thirdparty/ and
dashboard/router.py) still exist and behave as assumed in the installed versions.
A failure names the library, its version and the adapter module to fix."""

from __future__ import annotations

from importlib.metadata import version

import numpy as np
import pytest
import timm
import torch


def _fail(library: str, adapter: str, what: str) -> str:
    return f"{library} {version(library)} changed ({what}): update {adapter}"


def test_timm_efficientnet_blocks():
    from cxrxai.thirdparty.timm_blocks import DepthwiseSeparableConv, InvertedResidual

    model = timm.create_model("tf_efficientnet_lite0", num_classes=2)
    kinds = {type(m) for m in model.modules()}
    adapter = "cxrxai/thirdparty/timm_blocks.py"
    assert {InvertedResidual, DepthwiseSeparableConv} <= kinds, _fail("timm", adapter, "blocks")
    block = next(m for m in model.modules() if isinstance(m, InvertedResidual))
    assert hasattr(block, "has_skip"), _fail("timm", adapter, "InvertedResidual.has_skip")


def test_shap_image_masker_caches():
    import shap

    from cxrxai.thirdparty.shap_masker import fresh_copy

    masker = shap.maskers.Image("blur(4,4)", (16, 16, 1))
    image = np.random.default_rng(0).random((16, 16, 1))
    masker(np.ones(masker.shape[1], bool), image)  # fills the caches keyed by id(image)
    adapter = "cxrxai/thirdparty/shap_masker.py"
    for name in ("last_xid", "_blur_value_cache"):
        assert hasattr(masker, name), _fail("shap", adapter, f"Image.{name}")
    copy = fresh_copy(masker)
    assert copy.last_xid is None and copy._blur_value_cache is None
    assert masker._blur_value_cache is not None  # the original keeps its own


def test_torch_tensor_versions_count_in_place_changes():
    from cxrxai.thirdparty.torch_versions import weights_state

    layer = torch.nn.Linear(2, 2)
    before = weights_state(layer)
    with torch.no_grad():
        layer.weight.mul_(2)
    adapter = "cxrxai/thirdparty/torch_versions.py"
    assert weights_state(layer) != before, _fail("torch", adapter, "Tensor._version")


def test_streamlit_pages_manager_flag():
    from streamlit.runtime.pages_manager import PagesManager

    adapter = "dashboard/router.py"
    assert hasattr(PagesManager, "uses_pages_directory"), _fail(
        "streamlit", adapter, "PagesManager.uses_pages_directory"
    )


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.uint8, np.int32])
def test_scikit_image_float_rule(dtype):
    """superpixels._float_type is scikit-image's own rule, written out rather than
    imported from its private ``_shared`` (checked against it here, and only here)."""
    from skimage._shared.utils import _supported_float_type

    from cxrxai.explain.superpixels import _float_type

    assert _float_type(dtype) is _supported_float_type(np.dtype(dtype)), _fail(
        "scikit-image", "cxrxai/explain/superpixels.py", "_supported_float_type"
    )


def test_smp_model_parts():
    import segmentation_models_pytorch as smp

    from cxrxai.thirdparty.smp_parts import masks_and_features

    model = smp.Unet(
        "tu-tf_efficientnet_lite0",
        encoder_weights=None,
        in_channels=1,
        classes=1,
        decoder_channels=(16, 8, 8, 8, 8),
    ).eval()
    batch = torch.rand(2, 1, 64, 64)
    adapter = "cxrxai/thirdparty/smp_parts.py"
    with torch.inference_mode():
        masks, features = masks_and_features(model, batch)
        assert torch.equal(masks, model(batch)), _fail(
            "segmentation-models-pytorch", adapter, "forward"
        )
    assert features.shape[:2] == (2, 320), _fail("segmentation-models-pytorch", adapter, "encoder")
