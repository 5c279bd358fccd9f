"""The Inside tab: every statistic it shows, recomputed here from the norm layer's own input, captured with a hook.

The view (``webapp.inside.InsideView``) runs on the shipped checkpoints and the companions of the
Lab's demo; these tests hook private copies of the same networks and recompute each number by hand.
"""

import copy
import itertools
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from model import build_model, standardize
from probes.inside import LayerNotFound, NormProbe, norm_layers
from tests.conftest import CHECKPOINTS, read_png
from webapp.inference import ModelBank
from webapp.inside import INSIDE_OUTPUTS, NO_IMAGE, PANELS, InsideView
from webapp.lab import COMPANION_BATCHES, COMPANION_SIZE
from webapp.layout import App, load_app
from webapp.norm_figures import SPLIT, feature_maps

TOLERANCE = dict(rtol=1e-4, atol=1e-5)  # the view's JSON keeps six significant digits


@pytest.fixture(scope="module")
def app() -> App:
    loaded = load_app(CHECKPOINTS)
    if loaded.bank.problems:
        pytest.fail(f"the shipped models did not load: {loaded.bank.problems}")
    return loaded


@pytest.fixture(scope="module")
def view(app: App) -> InsideView:
    return app.inside


@pytest.fixture(scope="module")
def cat() -> Path:
    return CHECKPOINTS / "examples" / "cat.png"


def hooked(network: nn.Module, module_name: str, x: Tensor) -> tuple[Tensor, Tensor]:
    """The input and output of one module of ``network`` on ``x``, through a hook of the test's own."""
    seen = {}

    def hook(_: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        seen["input"], seen["output"] = args[0].detach().clone(), output.detach().clone()

    handle = network.get_submodule(module_name).register_forward_hook(hook)
    try:
        with torch.no_grad():
            network(x)
    finally:
        handle.remove()
    return seen["input"], seen["output"]


def lab_batches(pixels: np.ndarray, pool: Tensor) -> list[Tensor]:
    """The Lab demo's batches at its starting settings, built by hand: the image first, then companions drawn
    with ``randperm`` from a generator seeded with the draw number (0)."""
    image = torch.from_numpy(pixels).permute(2, 0, 1)
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(COMPANION_BATCHES):
        chosen = torch.randperm(len(pool), generator=generator)[: COMPANION_SIZE - 1]
        batches.append(standardize(torch.cat([image[None], pool[chosen]])))
    return batches


def norm_modules(network: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in network.named_modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]


def test_norm_layers_are_found_by_type_in_the_order_they_run(view: InsideView) -> None:
    for norm, loaded in view.bank.models.items():
        modules = norm_modules(loaded.network)
        layers = view.probes[norm].layers
        assert [layer.name for layer in layers] == [name for name, _ in modules], norm
        for layer, (name, module) in zip(layers, modules, strict=True):
            x, _ = hooked(copy.deepcopy(loaded.network).eval(), name, torch.zeros(1, 3, 32, 32))
            assert (layer.channels, layer.height, layer.width) == tuple(x.shape[1:]), name
            assert layer.groups == (module.num_groups if isinstance(module, nn.GroupNorm) else None)
    # Another architecture, with other widths and sizes, needs nothing but its modules' types.
    reference = build_model("reference", "gn", 2)
    layers = norm_layers(reference)
    assert len(layers) == len(norm_modules(reference)) == 8
    assert [(layer.channels, layer.height) for layer in layers[:2]] == [(10, 30), (20, 28)]
    assert reference.training  # the dry run used a copy


def test_statistics_shown_are_recomputed_from_the_hooked_input(view: InsideView, app: App, cat: Path) -> None:
    for index in range(len(view.layers)):
        check_statistics(view, app, cat, index)


def check_statistics(view: InsideView, app: App, cat: Path, index: int) -> None:
    shown = view.show(str(cat), index)["numbers"]
    pixels = read_png(cat)
    assert shown["layer"]["index"] == index
    for norm, loaded in view.bank.models.items():
        name = view.probes[norm].layers[index].name
        numbers = shown["models"][norm]
        network = copy.deepcopy(loaded.network).eval()
        module = network.get_submodule(name)
        x, _ = hooked(network, name, loaded.input(pixels))
        np.testing.assert_allclose(numbers["image_channel_mean"], x[0].mean(dim=(1, 2)), **TOLERANCE)
        if isinstance(module, nn.BatchNorm2d):
            # At inference BN uses its buffers; in training mode each Lab batch's own statistics.
            np.testing.assert_allclose(numbers["inference"]["mean"], module.running_mean, **TOLERANCE)
            np.testing.assert_allclose(numbers["inference"]["var"], module.running_var, **TOLERANCE)
            trained = copy.deepcopy(loaded.network).train()
            batches = lab_batches(pixels, app.lab_demo.pool)
            assert numbers["training"]["batches"] == len(batches) and numbers["training"]["batch_size"] == 4
            for row, batch in enumerate(batches):
                xb, _ = hooked(trained, name, batch)
                np.testing.assert_allclose(numbers["training"]["mean"][row], xb.mean(dim=(0, 2, 3)), **TOLERANCE)
                np.testing.assert_allclose(numbers["training"]["var"][row], xb.var(dim=(0, 2, 3), correction=0),
                                           **TOLERANCE)
        else:
            groups = module.num_groups
            values = x[0].reshape(groups, -1)  # one row per group of C/G channels, all positions
            if norm == "ln":
                assert groups == 1
                values = x[0].reshape(1, -1)  # LayerNorm: the whole image, over (C, H, W)
                np.testing.assert_allclose(numbers["inference"]["mean"][0], x[0].mean(), **TOLERANCE)
            np.testing.assert_allclose(numbers["inference"]["mean"], values.mean(dim=1), **TOLERANCE)
            np.testing.assert_allclose(numbers["inference"]["var"], values.var(dim=1, correction=0), **TOLERANCE)
            assert "training" not in numbers
        np.testing.assert_allclose(numbers["gamma"], module.weight.detach(), **TOLERANCE)
        np.testing.assert_allclose(numbers["beta"], module.bias.detach(), **TOLERANCE)


def assert_sets_standardized(z: Tensor, var: Tensor, eps: float, where: str) -> None:
    """Each row of ``z`` (one set's values with every channel's beta removed and gamma divided out) has mean 0
    and standard deviation sqrt(var / (var + eps)): 1, less what epsilon takes."""
    np.testing.assert_allclose(z.mean(dim=1), 0, atol=2e-4, err_msg=where)
    np.testing.assert_allclose(z.std(dim=1, correction=0), torch.sqrt(var / (var + eps)), atol=2e-4, err_msg=where)
    assert bool((z.std(dim=1, correction=0) <= 1 + 2e-4).all()), where


def test_after_the_layer_each_set_has_mean_beta_and_std_gamma(view: InsideView, app: App, cat: Path) -> None:
    pixels = read_png(cat)
    for (norm, loaded), index in itertools.product(view.bank.models.items(), range(len(view.layers))):
        probe = view.probes[norm]
        layer = probe.layers[index]
        module = loaded.network.get_submodule(layer.name)
        gamma, beta = module.weight.detach()[:, None, None], module.bias.detach()[:, None, None]
        # The output the view shows, against the input it shows.
        reading = probe.read(index, loaded.input(pixels))
        before, after = reading.before, reading.after
        if layer.groups is None:
            # At inference BN's sets do not get mean beta: the running averages stand in for their statistics.
            expected = (before - module.running_mean[:, None, None]) / torch.sqrt(
                module.running_var[:, None, None] + module.eps) * gamma + beta
            np.testing.assert_allclose(after, expected, rtol=1e-4, atol=1e-4)
            # In training mode each channel's values across the batch are the set.
            trained = copy.deepcopy(loaded.network).train()
            for batch in lab_batches(pixels, app.lab_demo.pool)[:3]:
                xb, yb = hooked(trained, layer.name, batch)
                z = ((yb - beta) / gamma).transpose(0, 1).reshape(layer.channels, -1)
                var = xb.var(dim=(0, 2, 3), correction=0)
                assert_sets_standardized(z, var, module.eps, f"{norm} layer {index}, training mode")
        else:
            z = ((after - beta) / gamma).reshape(layer.groups, -1)
            var = before.reshape(layer.groups, -1).var(dim=1, correction=0)
            assert_sets_standardized(z, var, module.eps, f"{norm} layer {index}")


def test_the_sets_are_counted_as_the_layers_form_them(view: InsideView, cat: Path) -> None:
    for index, layer in enumerate(view.layers):
        shown = view.show(str(cat), index)["numbers"]["models"]
        c, hw, n = layer.channels, layer.height * layer.width, COMPANION_SIZE
        groups = view.probes["gn"].layers[index].groups
        assert shown["bn"]["sets"] == {"batch": n, "count": c, "values_each": n * hw}
        assert shown["gn"]["sets"] == {"batch": n, "count": n * groups, "values_each": c // groups * hw}
        assert shown["ln"]["sets"] == {"batch": n, "count": n, "values_each": c * hw}


def test_every_panel_fills_with_valid_pictures(view: InsideView, cat: Path) -> None:
    shown = view.show(str(cat), 0)
    assert set(shown) == set(INSIDE_OUTPUTS)
    assert f"Normalization layer 1 of {len(view.layers)}" in shown["layer_note"]
    for norm, names in PANELS.items():
        assert shown[names["summary"]].startswith(f"**{view.bank.models[norm].title}**")
        # The maps are the layer's input and output for this image, side by side.
        reading = view.probes[norm].read(0, view.bank.models[norm].input(read_png(cat)))
        expected, _ = feature_maps(reading.before.numpy(), reading.after.numpy())
        assert np.array_equal(read_png(shown[names["maps"]]), expected)
        for part in ("histogram", "sets", "statistics"):
            ElementTree.fromstring(shown[names[part]])  # well-formed SVG
    assert "running standard deviations" in shown[PANELS["bn"]["summary"]]
    assert "In training mode" in shown[PANELS["bn"]["summary"]]


def test_before_and_after_share_one_colour_scale() -> None:
    maps = np.random.default_rng(0).normal(size=(8, 4, 4)).astype(np.float32)
    same, _ = feature_maps(maps, maps)
    half = (same.shape[1] - SPLIT) // 2
    assert np.array_equal(same[:, :half], same[:, -half:])
    # Ten times larger values after the layer: the same scale makes them stronger colours, not the same ones.
    louder, limit = feature_maps(maps, 10 * maps)
    white = np.array([247, 247, 247])
    left = np.abs(louder[:, :half].astype(int) - white).sum()
    right = np.abs(louder[:, -half:].astype(int) - white).sum()
    assert right > 2 * left and limit > 9 * np.abs(maps).max() * 0.5


def test_a_layer_out_of_range_is_a_clear_message(view: InsideView, cat: Path) -> None:
    last = len(view.layers) - 1
    for layer in (last + 1, -1, 99, "deep", 2.5, None):
        with pytest.raises(gr.Error, match=f"0 to {last}"):
            view.show(str(cat), layer)
    with pytest.raises(LayerNotFound, match=f"numbered 0 to {last}"):
        view.probes["bn"].layer(last + 1)


def test_a_missing_image_says_what_to_do(view: InsideView) -> None:
    shown = view.show(None, 0)
    assert shown["layer_note"] == NO_IMAGE and "upload" in NO_IMAGE.lower()
    assert all(shown[names["maps"]] is None and not shown[names["sets"]] for names in PANELS.values())


@pytest.mark.parametrize(("content", "phrase"), [(b"not a picture at all", "not an image"), (b"", "empty")])
def test_an_unreadable_upload_is_a_clear_message(view: InsideView, tmp_path: Path, content: bytes,
                                                 phrase: str) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(content)
    with pytest.raises(gr.Error, match=phrase):
        view.show(str(path), 0)
    with pytest.raises(gr.Error, match="did not arrive"):
        view.show(str(tmp_path / "gone.png"), 0)


def test_an_unavailable_model_leaves_the_others_shown(view: InsideView, app: App, cat: Path) -> None:
    models = {norm: loaded for norm, loaded in view.bank.models.items() if norm != "ln"}
    bank = ModelBank(view.bank.folder, models, {"ln": "ln.safetensors is missing."})
    shown = InsideView(bank, app.lab_demo.pool).show(str(cat), 0)
    assert "unavailable" in shown[PANELS["ln"]["summary"]] and shown[PANELS["ln"]["maps"]] is None
    assert shown[PANELS["gn"]["maps"]] is not None and set(shown["numbers"]["models"]) == {"bn", "gn"}


def test_concurrent_requests_each_read_their_own_layer(view: InsideView, cat: Path) -> None:
    expected = {index: view.show(str(cat), index)["numbers"] for index in range(6)}
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: (i % 6, view.show(str(cat), i % 6)["numbers"]), range(24)))
    for index, numbers in results:
        assert numbers == expected[index], index


def test_a_network_of_another_shape_can_be_probed() -> None:
    network = build_model("reference", "bn").eval()
    probe = NormProbe(network)
    x = torch.randn(1, 3, 32, 32)
    batch = [torch.randn(4, 3, 32, 32)]
    reading = probe.read(7, x, batch)
    assert reading.before.shape == (40, 1, 1) and reading.batch_mean.shape == (1, 40)
