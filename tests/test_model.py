from pathlib import Path

import numpy as np
import pytest
import torch

from artifacts.folder import CheckpointFolder
from artifacts.mistakes import decode_sheet, encode_sheet
from artifacts.weights import read_metadata
from model import ARCHITECTURES, NORMS, build_model, count_parameters, make_norm, network_fingerprint
from model.architectures import shipped_recipe_on
from model.network import ResidualNet


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("norm", NORMS)
def test_every_network_is_under_the_parameter_budget(arch: str, norm: str) -> None:
    assert count_parameters(build_model(arch, norm)) < 50_000


@pytest.mark.parametrize("norm", NORMS)
def test_the_shipped_models_are_the_network_the_registry_builds_today(checkpoint_dir: Path, norm: str) -> None:
    # A change to the code of the layers that leaves the shipped network's layers as they were keeps its
    # fingerprint, so its checkpoints are still recognized (training skips them, results stay shown).
    metadata = read_metadata(CheckpointFolder(checkpoint_dir).weights(norm))
    assert metadata["network"] == network_fingerprint(build_model(metadata["arch"], norm))


def test_only_a_group_count_that_does_not_divide_a_width_is_reported_as_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="3 groups do not divide every width of the loop network"):
        build_model("loop", "gn", 3)
    broken = shipped_recipe_on("broken", "a plan with a block that never runs", ("c32p", "r32x0"))
    monkeypatch.setitem(ARCHITECTURES, "broken", broken)
    with pytest.raises(ValueError, match="at least once") as raised:
        build_model("broken", "gn")
    assert "groups" not in str(raised.value)


@pytest.mark.parametrize("norm", NORMS)
def test_seed_network_matches_the_reference_parameter_count(norm: str) -> None:
    assert count_parameters(build_model("reference", norm)) == 39_490


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("norm", NORMS)
def test_forward_gives_ten_logits_per_image(arch: str, norm: str) -> None:
    model = build_model(arch, norm).eval()
    assert model(torch.randn(5, 3, 32, 32)).shape == (5, 10)


def outputs_for_first_sample(model: torch.nn.Module, companions_seed: int) -> torch.Tensor:
    first = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    others = torch.randn(7, 3, 32, 32, generator=torch.Generator().manual_seed(companions_seed)) * 3 + 1
    with torch.no_grad():
        return model(torch.cat([first, others]))[0]


@pytest.mark.parametrize("norm", ["gn", "ln"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_group_and_layer_norm_outputs_do_not_depend_on_the_batch(norm: str, mode: str) -> None:
    torch.manual_seed(0)
    model = build_model("residual", norm).train(mode == "train")
    model.apply(lambda m: setattr(m, "p", 0.0) if isinstance(m, torch.nn.Dropout) else None)
    torch.testing.assert_close(outputs_for_first_sample(model, 1), outputs_for_first_sample(model, 2))


def test_batch_norm_couples_samples_in_train_mode_only() -> None:
    torch.manual_seed(0)
    model = build_model("residual", "bn")
    model.train()
    assert not torch.allclose(outputs_for_first_sample(model, 1), outputs_for_first_sample(model, 2), atol=1e-3)
    model.eval()
    torch.testing.assert_close(outputs_for_first_sample(model, 1), outputs_for_first_sample(model, 2))


def test_norm_factory_builds_the_named_layers() -> None:
    assert isinstance(make_norm("bn", 8, 4), torch.nn.BatchNorm2d)
    group = make_norm("gn", 8, 4)
    assert isinstance(group, torch.nn.GroupNorm) and group.num_groups == 4
    layer = make_norm("ln", 8, 4)
    assert isinstance(layer, torch.nn.GroupNorm) and layer.num_groups == 1


def test_layer_norm_normalizes_each_sample_over_channels_and_pixels() -> None:
    norm = make_norm("ln", 6, 1)
    x = torch.randn(3, 6, 5, 5) * 4 + 2
    y = norm(x)
    torch.testing.assert_close(y.mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(dim=(1, 2, 3), unbiased=False), torch.ones(3), atol=1e-3, rtol=0)


def test_unknown_names_are_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="bn, gn, ln"):
        build_model("residual", "instance")
    with pytest.raises(ValueError, match="residual, reference"):
        build_model("vgg", "bn")
    with pytest.raises(ValueError, match="divide"):
        make_norm("gn", 10, 4)
    with pytest.raises(ValueError, match="unknown layer"):
        ResidualNet("bn", 4, plan=("x16",))


@pytest.mark.parametrize("count", [1, 64, 65, 300])
def test_image_sheet_keeps_every_pixel(count: int) -> None:
    images = np.random.default_rng(count).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    encoded = encode_sheet(images)
    assert encoded.dtype == np.uint8 and encoded.ndim == 1
    assert np.array_equal(decode_sheet(encoded, count), images)


def test_image_sheet_refuses_what_it_cannot_hold() -> None:
    with pytest.raises(ValueError, match="uint8"):
        encode_sheet(np.zeros((3, 32, 32, 3), dtype=np.float32))
    encoded = encode_sheet(np.zeros((3, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="cannot hold 65 images"):
        decode_sheet(encoded, 65)
    noisy = encode_sheet(np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(OSError):
        decode_sheet(noisy[: len(noisy) // 2], 3)


# The published summary table: every conv and pool output, C1 C2 c3 P1 C4 C5 C6 c7 P2 C8 C9 C10.
REFERENCE_OUTPUTS = [
    ("C1", (10, 30, 30)), ("C2", (20, 28, 28)), ("c3", (10, 28, 28)), ("P1", (10, 14, 14)),
    ("C4", (20, 14, 14)), ("C5", (30, 14, 14)), ("C6", (40, 14, 14)), ("c7", (10, 14, 14)), ("P2", (10, 7, 7)),
    ("C8", (20, 5, 5)), ("C9", (30, 3, 3)), ("C10", (40, 1, 1)),
]


@pytest.mark.parametrize("norm", NORMS)
def test_reference_network_matches_the_published_table_layer_by_layer(norm: str) -> None:
    model = build_model("reference", norm).eval()
    outputs = []
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.MaxPool2d)) and module is not model.head[1]:
            module.register_forward_hook(lambda _, __, output: outputs.append(tuple(output.shape[1:])))
    logits = model(torch.zeros(2, 3, 32, 32))
    assert outputs == [shape for _, shape in REFERENCE_OUTPUTS]
    assert tuple(logits.shape) == (2, 10)  # GAP, then c11
    assert count_parameters(model) == 39_490
    # Every 3x3 block ends in the published dropout_value, 0.1.
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.1] * 8


@pytest.mark.parametrize("groups", [3, 0, "4", 4.0, True])
def test_a_group_count_that_cannot_work_is_refused_by_name(groups: object) -> None:
    with pytest.raises(ValueError, match="group"):
        build_model("residual", "gn", groups)
