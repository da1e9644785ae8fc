"""The positional EfficientNet-Lite0 -> timm mapping, verified on ImageNet photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data
import torch

from cxrxai.errors import CheckpointError
from cxrxai.training.pretrained import imagenet_lite0, map_lite0_state_dict

EGYPTIAN_CAT, ESPRESSO = 285, 967


def _photo(name: str) -> torch.Tensor:
    rgb = getattr(skimage.data, name)().astype(np.float32) / 255.0
    rgb = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA)
    return (torch.from_numpy(rgb).permute(2, 0, 1)[None] - 0.5) / 0.5


@pytest.fixture(scope="module")
def imagenet_model():
    return imagenet_lite0().eval()


@pytest.mark.parametrize(
    ("photo", "label", "at_least"), [("chelsea", EGYPTIAN_CAT, 0.7), ("coffee", ESPRESSO, 0.8)]
)
def test_mapping_classifies_imagenet_photos(imagenet_model, photo, label, at_least):
    with torch.no_grad():
        probs = imagenet_model(_photo(photo)).softmax(1)[0]
    assert int(probs.argmax()) == label and float(probs[label]) > at_least


def test_gray_stem_equals_replicated_rgb(imagenet_model):
    gray = imagenet_lite0(in_chans=1).eval()
    image = _photo("chelsea").mean(1, keepdim=True)
    with torch.no_grad():
        torch.testing.assert_close(
            gray(image), imagenet_model(image.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4
        )


def test_new_head_size():
    assert imagenet_lite0(num_classes=3, in_chans=1).classifier.out_features == 3


def test_mapping_refuses_mismatched_shapes():
    with pytest.raises(CheckpointError, match="does not fit"):
        map_lite0_state_dict({"a": torch.zeros(2)}, {"b": torch.zeros(3)})
    with pytest.raises(CheckpointError, match="positional mapping"):
        map_lite0_state_dict({"a": torch.zeros(2)}, {})
