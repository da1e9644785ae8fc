"""Method settings: described from the signatures, checked before any work, set from the CLI."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cxrxai.checkpoint import load_checkpoint
from cxrxai.cli import main
from cxrxai.errors import CxrxaiError
from cxrxai.evaluation.sanity import cascading_randomisation
from cxrxai.explain import get_explainer
from cxrxai.explain.lrp import COMPOSITES
from cxrxai.explain.params import (
    changed,
    check_params,
    describe,
    parameters,
    parse_param_specs,
    parse_variant,
    variant,
)
from cxrxai.explain.registry import METHODS


def test_settings_are_declared_by_each_explainer():
    gradcam = {p.name: p for p in parameters("gradcam")}
    assert set(gradcam) == {"layer", "batch_size"}
    assert gradcam["layer"].kind is str and gradcam["layer"].optional
    assert gradcam["layer"].default is None and gradcam["batch_size"].default == 32
    (composite,) = parameters("lrp")
    assert composite.choices == tuple(COMPOSITES)
    lime = {p.name: p for p in parameters("lime")}
    assert lime["n_samples"].default == 1000 and lime["batch_size"].optional
    assert not lime["batch_size"].ui  # speed only: not offered in the dashboard
    explainer = get_explainer("lime", segmentation="slic")  # each setting an attribute
    assert explainer.segmentation == "slic" and explainer.n_samples == 1000


@pytest.mark.parametrize("method", list(METHODS))
def test_every_setting_is_described(method):
    # a setting reaches the CLI and the UI with its help; its default must pass its check
    for param in parameters(method):
        assert param.help and param.help != param.name, f"{method}.{param.name}"
        assert param.kind in (int, float, str)
        assert param.check(method, param.default) == param.default


def test_parse_specs_converts_by_type():
    settings = parse_param_specs(
        [
            "gradcam.layer=layer3",
            "lime.n_samples=2000",
            "lime.batch_size=none",
            "smoothgrad.sigma=0.2",
            "shap.masker=blur(8,8)",
            "lrp.composite=epsilon-gamma-box",
        ],
        ["gradcam", "lime", "smoothgrad", "shap", "lrp"],
    )
    assert settings == {
        "gradcam": {"layer": "layer3"},
        "lime": {"n_samples": 2000, "batch_size": None},
        "smoothgrad": {"sigma": 0.2},
        "shap": {"masker": "blur(8,8)"},
        "lrp": {"composite": "epsilon-gamma-box"},
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gradcam-layer3", "write METHOD.NAME=VALUE"),
        ("gradcam.layer", "write METHOD.NAME=VALUE"),
        ("lime.n_samples=100", "not among the methods run"),
        ("gradcam.depth=3", "'depth' is not a setting of gradcam; its settings: layer, batch_size"),
        ("smoothgrad.n_samples=many", "must be a number, got 'many'"),
        ("smoothgrad.n_samples=2.5", "must be a number"),
        ("smoothgrad.n_samples=0", "must be at least 1, got 0"),
        ("smoothgrad.sigma=2", "must be at most 1, got 2.0"),
        ("lrp.composite=zplus", "must be one of ['epsilon-plus-flat'"),
        ("shap.masker=gaussian", "must look like one of: blur(16,16)"),
        ("shap.n_samples=3", "must be at least 10"),
    ],
)
def test_bad_specs_name_the_fix(spec, message):
    with pytest.raises(CxrxaiError) as error:
        parse_param_specs([spec], ["gradcam", "smoothgrad", "lrp", "shap"])
    assert message in str(error.value)


def test_get_explainer_checks_settings_before_any_work():
    with pytest.raises(CxrxaiError, match="not a setting of lrp"):
        get_explainer("lrp", epsilon=0.1)  # a TypeError from the constructor before
    with pytest.raises(CxrxaiError, match="must be an int, got 'ten'"):
        get_explainer("lime", n_samples="ten")
    with pytest.raises(CxrxaiError, match="must be an int, got True"):
        get_explainer("lime", n_samples=True)
    with pytest.raises(CxrxaiError, match="needs a value"):
        get_explainer("lime", n_samples=None)
    assert get_explainer("smoothgrad", sigma=1).sigma == 1.0  # lossless conversions
    assert get_explainer("lime", n_samples=2000.0).n_samples == 2000
    assert check_params("gradcam", {"layer": None}) == {"layer": None}


def test_changed_and_describe():
    params = {"layer": "layer3", "batch_size": 32}
    assert changed("gradcam", params) == {"layer": "layer3"}
    assert describe(changed("gradcam", params)) == "layer=layer3"
    assert describe({}) == ""
    # speed-only settings do not make a variant: the maps are the same
    assert variant("lime", {"batch_size": 64, "n_samples": 2000}) == "lime(n_samples=2000)"


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint(labels=("COVID-19", "Normal"), size=48, target_layer="layer4")


@pytest.fixture()
def image_file(tmp_path):
    path = tmp_path / "chest.png"
    cv2.imwrite(str(path), (np.random.default_rng(0).random((50, 40)) * 255).astype(np.uint8))
    return path


def _explain(image_file, checkpoint, out, *extra):
    args = ["explain", str(image_file), "--checkpoint", str(checkpoint), "--target", "Normal"]
    return main([*args, "--methods", "gradcam", "--no-cache", "--out", str(out), *extra])


def test_cli_layer_setting_changes_the_map(tmp_path, checkpoint, image_file, capsys):
    assert _explain(image_file, checkpoint, tmp_path / "default") == 0
    assert _explain(image_file, checkpoint, tmp_path / "l3", "--param", "gradcam.layer=layer3") == 0
    with np.load(tmp_path / "default" / "chest_gradcam_Normal.npz") as data:
        card_layer = data["values"]
    with np.load(tmp_path / "l3" / "chest_gradcam_Normal.npz") as data:
        layer3 = data["values"]
    assert card_layer.shape == layer3.shape == (50, 40)
    assert not np.allclose(card_layer, layer3)


def test_cli_bad_setting_is_one_line_and_writes_nothing(tmp_path, checkpoint, image_file, capsys):
    out = tmp_path / "out"
    assert _explain(image_file, checkpoint, out, "--param", "gradcam.layer=fc") == 2
    err = capsys.readouterr().err
    assert "Layer 'fc' has no (N, C, H, W) feature map" in err
    assert "Traceback" not in err
    assert _explain(image_file, checkpoint, out, "--param", "lime.n_samples=9") == 2
    assert "not among the methods run (gradcam)" in capsys.readouterr().err
    assert not out.exists()


def test_cli_methods_and_layers_list_the_choices(checkpoint, capsys):
    assert main(["methods"]) == 0
    listing = capsys.readouterr().out
    assert "--param lrp.composite=...  (default epsilon-plus-flat; one of epsilon-plus-flat" in (
        listing
    )
    assert "--param gradcam.layer=...  (default auto)" in listing
    assert main(["layers", "--checkpoint", str(checkpoint)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("layer4 ") and "(model card default)" in line for line in lines)
    assert any(line.startswith("layer3.1.conv2 ") for line in lines)
    assert not any(line.startswith("fc ") for line in lines)


def test_sanity_check_uses_the_settings(checkpoint):
    bundle = load_checkpoint(checkpoint, device="cpu")
    image = np.random.default_rng(1).random((48, 48), dtype=np.float32)
    rows = cascading_randomisation(
        bundle, image, ["gradcam"], 1, max_groups=1, params={"gradcam": {"layer": "layer3"}}
    )
    default = cascading_randomisation(bundle, image, ["gradcam"], 1, max_groups=1)
    assert len(rows) == len(default) == 1
    # the same randomisation compared at another layer: other maps, another similarity
    assert rows[0].randomised_through == default[0].randomised_through
    assert (rows[0].spearman, rows[0].ssim) != (default[0].spearman, default[0].ssim)
    with pytest.raises(CxrxaiError, match="Layer 'fc' has no"):  # the setting reached it
        cascading_randomisation(
            bundle, image, ["gradcam"], 1, max_groups=1, params={"gradcam": {"layer": "fc"}}
        )


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("gradcam", {}),
        ("gradcam", {"layer": "blocks.5"}),
        ("shap", {"n_samples": 1000, "masker": "blur(8,8)"}),
        ("smoothgrad", {"n_samples": 20, "sigma": 0.2}),
        # values that hold the separator, quotes, brackets or spaces read back too
        ("gradcam", {"layer": "stage, 2"}),
        ("gradcam", {"layer": "it's (odd)=x"}),
        ("gradcam", {"layer": " padded "}),
        ("gradcam", {"layer": "'quoted'"}),
    ],
)
def test_variant_names_read_back(method, params):
    name = variant(method, params)
    assert parse_variant(name) == (method, params)


def test_one_spelling_for_the_number_of_samples_and_old_names_still_read():
    for method in ("lime", "kernel-shap", "shap", "smoothgrad", "smoothgrad-cam"):
        assert "n_samples" in {p.name for p in parameters(method)}, method
    assert parse_variant("lime(num_samples=2000)") == ("lime", {"n_samples": 2000})
    assert parse_variant("shap(max_evals=100, masker=blur(8,8))") == (
        "shap",
        {"n_samples": 100, "masker": "blur(8,8)"},
    )
    assert get_explainer("kernel-shap", nsamples=60).n_samples == 60


def test_bad_variant_names_are_clear():
    with pytest.raises(CxrxaiError, match="Cannot read the setting 'depth=3'"):
        parse_variant("gradcam(depth=3)")
    with pytest.raises(CxrxaiError, match="Cannot read the method variant"):
        parse_variant("gradcam(layer=x")
    with pytest.raises(CxrxaiError, match="Unknown explanation method"):
        parse_variant("psychic(layer=x)")
