"""Checkpoint save/load, clear errors for bad checkpoints, torchxrayvision integration."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrxai.card import ModelCard
from cxrxai.checkpoint import (
    build_network,
    load_checkpoint,
    load_xrv_weights,
    save_checkpoint,
)
from cxrxai.environment import pick_device
from cxrxai.errors import CheckpointError, CxrxaiError

TINY = "resnet18"  # small timm model; random weights, built offline


def tiny_card(**overrides) -> ModelCard:
    fields = {
        "architecture": TINY,
        "labels": ["a", "b", "c"],
        "task": "multiclass",
        "input_size": (64, 64),
        "in_channels": 1,
        "normalisation": {"mean": [0.5], "std": [0.25]},
        "target_layer": "layer4",
    }
    fields.update(overrides)
    return ModelCard(**fields)


@pytest.fixture()
def saved(tmp_path):
    card = tiny_card()
    torch.manual_seed(0)
    model = build_network(card).eval()
    save_checkpoint(model, card, tmp_path / "ckpt")
    return tmp_path / "ckpt", model, card


def test_round_trip_same_outputs(saved):
    folder, model, _card = saved
    bundle = load_checkpoint(folder, device="cpu")
    assert not bundle.model.training
    assert bundle.device == torch.device("cpu") and bundle.labels == ["a", "b", "c"]
    image = np.random.default_rng(0).random((100, 80), dtype=np.float32)
    with torch.no_grad():
        expected = torch.softmax(model(bundle.preprocess(image)), 1).numpy()
    np.testing.assert_allclose(bundle.predict_proba(image), expected, rtol=1e-5)
    assert bundle.predict_proba([image, image]).shape == (2, 3)
    assert len(bundle.weights_sha256) == 64
    assert load_checkpoint(folder / "model_card.json").weights_sha256 == bundle.weights_sha256


def test_preprocess_resizes_and_normalises(saved):
    bundle = load_checkpoint(saved[0], device="cpu")
    batch = bundle.preprocess(np.full((30, 50), 0.75, dtype=np.float32))
    assert batch.shape == (1, 1, 64, 64)
    torch.testing.assert_close(batch, torch.full_like(batch, (0.75 - 0.5) / 0.25))


def test_weights_that_do_not_fit(saved):
    folder, _, card = saved
    card.labels = ["a", "b"]  # two outputs, weights have three
    card.save(folder / "model_card.json")
    with pytest.raises(CheckpointError, match=r"shape mismatch.*fc\."):
        load_checkpoint(folder)


def test_unknown_architecture(saved):
    folder, _, _ = saved
    data = json.loads((folder / "model_card.json").read_text())
    data["architecture"] = "resnet_of_dreams"
    (folder / "model_card.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="Unknown timm architecture 'resnet_of_dreams'"):
        load_checkpoint(folder)


def test_bad_target_layer(saved):
    folder, _, card = saved
    card.target_layer = "layer9"
    card.save(folder / "model_card.json")
    with pytest.raises(CheckpointError, match="target_layer 'layer9'"):
        load_checkpoint(folder)


def test_missing_and_corrupt_files(tmp_path, saved):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nowhere")
    folder, _, _ = saved
    (folder / "weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(folder)
    (folder / "weights.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"Weights file .* not found"):
        load_checkpoint(folder)


def test_device_choice():
    assert pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device(None).type == expected
    if not torch.cuda.is_available():
        with pytest.raises(CxrxaiError, match="no CUDA GPU"):
            pick_device("cuda")


@pytest.mark.parametrize("as_module", [False, True])
def test_torchxrayvision_densenet_from_local_file(tmp_path, as_module):
    """Random-initialised xrv DenseNet saved to disk, loaded without any download."""
    import torchxrayvision as xrv

    torch.manual_seed(0)
    reference = xrv.models.DenseNet(weights=None).eval()
    path = tmp_path / "xrv.pt"
    torch.save(reference if as_module else reference.state_dict(), path)
    # a pickled module is read only when the user vouches for it
    bundle = load_xrv_weights(path, device="cpu", trust_pickle=as_module)
    assert bundle.labels == list(xrv.datasets.default_pathologies)
    assert bundle.card.input_size == (224, 224) and bundle.card.task == "multilabel"
    image = np.random.default_rng(1).random((300, 280), dtype=np.float32)
    batch = bundle.preprocess(image)
    assert float(batch.min()) >= -1024.001 and float(batch.max()) <= 1024.001
    # The same pixels through xrv's own normalisation give the same logits.
    xrv_input = torch.from_numpy(
        xrv.datasets.normalize(
            __import__("cv2").resize(image, (224, 224), interpolation=3) * 255, 255
        )
    )[None, None].float()
    with torch.no_grad():
        expected = torch.sigmoid(reference(xrv_input)).numpy()
    np.testing.assert_allclose(bundle.predict_proba(image), expected, rtol=1e-4, atol=1e-5)


def test_import_xrv_writes_a_checkpoint_the_dashboard_loads(tmp_path, capsys):
    import torchxrayvision as xrv

    from cxrxai.cli import main

    torch.manual_seed(0)
    torch.save(xrv.models.DenseNet(weights=None).eval(), tmp_path / "xrv.pt")
    out = tmp_path / "xrv-checkpoint"
    # a pickled model (as torchxrayvision publishes them) needs the explicit opt-in
    assert main(["import-xrv", str(tmp_path / "xrv.pt"), "--out", str(out)]) == 2
    assert "--trust-pickle" in capsys.readouterr().err and not out.exists()
    assert main(["import-xrv", str(tmp_path / "xrv.pt"), "--out", str(out), "--trust-pickle"]) == 0
    assert "checkpoint written" in capsys.readouterr().out
    imported = load_checkpoint(out, device="cpu")
    direct = load_xrv_weights(tmp_path / "xrv.pt", device="cpu", trust_pickle=True)
    assert imported.card.framework == "torchxrayvision" and "import-xrv" in imported.card.notes
    image = np.random.default_rng(2).random((240, 260), dtype=np.float32)
    np.testing.assert_allclose(imported.predict_proba(image), direct.predict_proba(image))
    # never over an existing checkpoint; a file that is not xrv weights is one clear line
    assert main(["import-xrv", str(tmp_path / "xrv.pt"), "--out", str(out)]) == 2
    assert "not empty; choose a new folder" in capsys.readouterr().err
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    assert main(["import-xrv", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "n")]) == 2
    assert "could not be read" in capsys.readouterr().err


class _Payload:
    """Pickles to a call of os.system: what a malicious .pt holds."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["checkpoint folder", "xrv weights", "import-xrv"])
def test_a_pickle_that_runs_code_is_refused_and_never_run(tmp_path, where, capsys, tiny_checkpoint):
    """Code in a pickled .pt never runs: torch.load(weights_only=True) refuses it, and the
    message says how to convert a file the user trusts."""
    from cxrxai.cli import main

    marker = tmp_path / "pwned"
    weights = tmp_path / "evil.pt"
    torch.save({"model": _Payload(marker)}, weights)
    if where == "checkpoint folder":  # a card beside a .pt weights file
        shutil.copy(tiny_checkpoint() / "model_card.json", tmp_path / "model_card.json")
        with pytest.raises(CheckpointError, match=r"pickled Python objects.*--trust-pickle"):
            load_checkpoint(weights, device="cpu")
    elif where == "xrv weights":
        with pytest.raises(CheckpointError, match="can run any code"):
            load_xrv_weights(weights, device="cpu")
    else:
        assert main(["import-xrv", str(weights), "--out", str(tmp_path / "out")]) == 2
        assert "pickled Python objects" in capsys.readouterr().err
    assert not marker.exists()


def test_checkpoints_offered_only_from_the_configured_folders(tmp_path, tiny_checkpoint):
    from cxrxai.checkpoint import available_checkpoints

    folder = tiny_checkpoint()
    (tmp_path / "empty").mkdir()
    found = available_checkpoints([folder.parent, tmp_path / "missing", tmp_path / "empty"])
    assert folder.resolve() in found and len(found) == len(set(found))
    assert all((path / "model_card.json").is_file() for path in found)
    assert available_checkpoints([folder]) == [folder.resolve()]  # a root that is one


def test_torchxrayvision_wrong_file(tmp_path):
    torch.save({"not": torch.zeros(3)}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_xrv_weights(tmp_path / "w.pt", device="cpu")


def test_torchxrayvision_resnet50_round_trip(tmp_path):
    import torchxrayvision as xrv

    from cxrxai.checkpoint import XRV_NORMALISATION

    card = ModelCard(
        architecture="resnet50",
        labels=list(xrv.datasets.default_pathologies),
        task="multilabel",
        input_size=(512, 512),
        in_channels=1,
        normalisation=dict(XRV_NORMALISATION),
        target_layer="model.layer4",
        framework="torchxrayvision",
    )
    torch.save(build_network(card).state_dict(), tmp_path / "r50.pt")
    bundle = load_xrv_weights(tmp_path / "r50.pt", architecture="resnet50", device="cpu")
    assert bundle.card.input_size == (512, 512)
    assert bundle.predict_proba(np.zeros((64, 64), np.float32)).shape == (1, 18)


def test_precision_choice_and_bf16_batch_inference(tiny_checkpoint):
    from cxrxai.runner import batched_probabilities, resolve_precision

    folder = tiny_checkpoint()
    assert load_checkpoint(folder, device="cpu").precision == "fp32"  # auto on the CPU
    assert resolve_precision("auto") == "fp32"  # on every device: bf16 is opt-in
    with pytest.raises(CheckpointError, match="Unknown precision 'fp16'"):
        load_checkpoint(folder, device="cpu", precision="fp16")
    images = torch.rand(4, 48, 48, generator=torch.Generator().manual_seed(0))
    fp32 = batched_probabilities(load_checkpoint(folder, device="cpu"), images, 2)
    bf16 = batched_probabilities(load_checkpoint(folder, "cpu", precision="bf16"), images, 2)
    assert fp32.dtype == bf16.dtype == torch.float32
    assert not torch.equal(fp32, bf16)  # autocast really ran
    assert torch.allclose(fp32, bf16, atol=0.05)


def test_compiled_batches_match_eager(tiny_checkpoint):
    """--compile: full batches go through torch.compile (one static shape), the remainder
    runs eagerly, and the probabilities equal the eager ones to float rounding."""
    from cxrxai.runner import batched_probabilities

    folder = tiny_checkpoint()
    eager = load_checkpoint(folder, device="cpu")
    compiled = load_checkpoint(folder, device="cpu", compile=True)
    images = torch.rand(7, 48, 48, generator=torch.Generator().manual_seed(0))
    expected = batched_probabilities(eager, images, 3)
    got = batched_probabilities(compiled, images, 3)  # chunks 3, 3 (compiled) and 1 (eager)
    assert compiled._compiled is not None and compiled.compile
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert eager._compiled is None


def test_compile_failure_falls_back_with_a_warning(tiny_checkpoint, monkeypatch):
    from cxrxai.runner import batched_probabilities

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    bundle = load_checkpoint(tiny_checkpoint(), device="cpu", compile=True)
    images = torch.rand(4, 48, 48, generator=torch.Generator().manual_seed(1))
    with pytest.warns(UserWarning, match="torch.compile failed .*no C\\+\\+ compiler"):
        got = batched_probabilities(bundle, images, 2)
    assert not bundle.compile  # later batches go straight to the eager model
    expected = batched_probabilities(load_checkpoint(tiny_checkpoint(), device="cpu"), images, 2)
    torch.testing.assert_close(got, expected)


def _broken_weights(kind: str, folder: Path) -> None:
    weights = folder / "weights.safetensors"
    data = weights.read_bytes()
    if kind == "random bytes":
        weights.write_bytes(os.urandom(4096))
    elif kind == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    elif kind == "header declares 1 TB":
        weights.write_bytes((1 << 40).to_bytes(8, "little") + b"{}")
    elif kind == "another model's tensors":
        from safetensors.torch import save_file

        save_file({"fc.weight": torch.zeros(3, 3)}, str(weights))
    elif kind == "empty":
        weights.write_bytes(b"")


@pytest.mark.parametrize(
    "kind",
    ["random bytes", "truncated", "header declares 1 TB", "another model's tensors", "empty"],
)
def test_hostile_weights_are_one_clear_error(tmp_path, tiny_checkpoint, kind):
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint(), folder)
    _broken_weights(kind, folder)
    with pytest.raises(CheckpointError, match=r"weights\.safetensors") as info:
        load_checkpoint(folder, device="cpu")
    assert "Traceback" not in str(info.value) and len(str(info.value)) < 3000
