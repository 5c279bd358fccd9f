"""The search's levers: each a setting of TrainConfig, off by default, doing what it names, recorded, resumable."""

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.transforms.v2 import functional as tv

from artifacts.weights import read_metadata
from model import ARCHITECTURES, DEFAULT_ARCH, NORMS, build_model, count_parameters, standardize
from model.network import (
    ChannelAttention,
    ConvNormAct,
    ResidualNet,
    StandardizedConv2d,
    dirac_init,
    whitening_init,
    zero_residual_init,
)
from training.config import LEVERS, ConfigError, TrainConfig, muon_trainable, option_words
from training.data import (
    Augmentation,
    Split,
    alternating_flips,
    augmented_batches,
    color_jitter,
    random_resized_crop,
    reflect_pad,
)
from training.evaluate import evaluate
from training.export import export_norm, finished, model_metadata
from training.loop import TrainResult, averaged_model, make_optimizer, start_run, train
from training.muon import MuonWithSGD, muon_filters, orthogonalize, scale_free
from training.search.space import ARCHS, in_space

CPU = torch.device("cpu")
# Every lever off.
TINY = TrainConfig(epochs=3, batch_size=64, lr=0.1, seed=3, flips="random", ema_decay=0.0, whiten_init=False)
ALL_ON = dict(schedule="cosine", warmup_fraction=0.1, flips="alternate", crop_scale=0.5, crop_ratio=1.5,
              color_jitter=0.3, ema_decay=0.9, dirac_init=True, whiten_init=True, zero_residual=True, muon_lr=0.03)
# The network every lever takes: the shipped one standardizes its filters, so none of them can start as an identity.
PLAIN = "residual-silu"


def test_a_lever_is_recorded_only_away_from_the_value_records_leave_out() -> None:
    # Our recipe's alternating flips, EMA, whitening start and (on the shipped network) Muon came from the search:
    # recorded, so that a record without them still reads as trained before them (random flips, no EMA, no
    # whitening, SGD for all).
    default = TrainConfig()
    assert default.levers() == {"flips": "alternate", "ema_decay": 0.99, "whiten_init": True, "muon_lr": 0.03}
    assert "muon_lr" not in TrainConfig(arch=PLAIN).levers()  # Muon's rate is the network's own, as --lr is
    assert set(default.lever_defaults()) == set(LEVERS)
    before = TrainConfig(arch="residual", flips="random", ema_decay=0.0, whiten_init=False)
    assert before.levers() == {}
    # The keys a resume state saved before the levers existed holds: those states still match.
    assert set(before.as_dict()) == {"arch", "norm", "epochs", "batch_size", "lr", "momentum", "weight_decay",
                                     "label_smoothing", "warmup_fraction", "crop_padding", "seed", "train_subset"}
    assert set(default.as_dict()) == set(before.as_dict()) | {"flips", "ema_decay", "whiten_init", "muon_lr"}
    assert TrainConfig(recipe="published", arch="reference").levers() == {}  # its defaults are the recipe's
    on = TrainConfig(arch=PLAIN, **ALL_ON)
    assert on.levers() == ALL_ON and ALL_ON.items() <= on.as_dict().items()


@pytest.mark.parametrize("config", [
    TrainConfig(norm="gn", gn_groups=8, lr=0.05, arch=PLAIN, **ALL_ON),
    TrainConfig(recipe="published", arch="reference"),
    replace(TINY, norm="ln"), TrainConfig(),
])
def test_a_checkpoints_record_gives_back_the_settings_it_was_trained_with(config: TrainConfig) -> None:
    with torch.device("meta"):
        network = build_model(config.arch, config.norm, config.gn_groups)
    history = [{"train_accuracy": 0.5, "seconds": 1.0}]
    record = model_metadata(TrainResult(network, history, config), test_accuracy=0.5, train_images=50_000)
    assert TrainConfig.from_record(record) == replace(config, epochs=20, seed=0)
    assert config.describes(record) and not config.describes({**record, "lr": config.lr * 2})


@pytest.mark.parametrize(("setting", "option"), [
    ({"crop_scale": 0.05}, "--crop-scale"), ({"crop_ratio": 0.5}, "--crop-ratio"), ({"color_jitter": 1.0},
     "--color-jitter"), ({"ema_decay": 1.0}, "--ema-decay"), ({"flips": "sometimes"}, "--flips"),
    ({"schedule": "step"}, "--schedule"), ({"warmup_fraction": -0.1}, "--warmup-fraction"),
    ({"muon_lr": 1.0}, "--muon-lr"), ({"muon_lr": 0.03, "arch": "reference", "recipe": "published"}, "--muon-lr"),
])
def test_a_lever_out_of_range_is_refused_naming_its_option(setting: dict, option: str) -> None:
    with pytest.raises(ConfigError, match=option):
        TrainConfig(**setting)


def test_option_words_spell_out_switches_as_flags() -> None:
    assert option_words({"ema_decay": 0.99, "dirac_init": True, "validation": False, "gn_groups": None}) == [
        "--ema-decay", "0.99", "--dirac-init"]


# ---- EMA --------------------------------------------------------------------------------------------

def test_the_moving_average_lerps_weights_and_batch_norm_statistics_and_copies_counters() -> None:
    torch.manual_seed(0)
    model = build_model("residual", "bn")
    averaged = averaged_model(model, decay=0.75)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    averaged.update_parameters(model)  # the first update copies
    model.train()
    model(torch.randn(8, 3, 32, 32))  # moves BatchNorm's running statistics and counters
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    averaged.update_parameters(model)
    now = model.state_dict()
    for name, tensor in averaged.module.state_dict().items():
        if name.endswith("num_batches_tracked"):
            assert torch.equal(tensor, now[name]) and tensor.item() == 1, name
        else:
            torch.testing.assert_close(tensor, 0.75 * before[name] + 0.25 * now[name], msg=name)


def test_with_ema_the_average_is_evaluated_and_exported(synthetic_split: Split, tmp_path: Path) -> None:
    config = replace(TINY, epochs=2, ema_decay=0.8)
    held_out = synthetic_split.subset(64)
    result = train(config, synthetic_split, held_out, CPU, tmp_path / "state", progress=False)
    # The same training without the average: its weights are those the average followed, and differ from it.
    plain = train(replace(config, ema_decay=0.0), synthetic_split, held_out, CPU, tmp_path / "plain", progress=False)
    assert plain.history[-1]["train_loss"] == result.history[-1]["train_loss"]
    averaged = dict(result.model.named_parameters())
    assert all(not torch.equal(p, averaged[name]) for name, p in plain.model.named_parameters())
    assert evaluate(result.model, held_out)[0] == result.history[-1]["test_loss"]
    assert evaluate(plain.model, held_out)[0] != result.history[-1]["test_loss"]
    metadata = export_norm(result, synthetic_split.subset(100), tmp_path / "out")
    assert metadata["ema_decay"] == 0.8
    saved = read_metadata(tmp_path / "out" / "seeds" / "3" / "bn.safetensors")
    assert saved["ema_decay"] == 0.8 and "flips" not in saved  # only the levers that were set
    assert finished(config, tmp_path / "out") and not finished(replace(config, ema_decay=0.0), tmp_path / "out")


# ---- Muon --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(32, 24, 3, 3), (48, 4), (4, 48), (16, 16, 1, 1)])
def test_orthogonalize_brings_every_singular_value_near_one_along_the_same_directions(shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    rows, columns = shape[0], math.prod(shape[1:])
    left, _ = torch.linalg.qr(torch.randn(rows, min(rows, columns)))
    right, _ = torch.linalg.qr(torch.randn(columns, min(rows, columns)))
    right = right.T
    singular = torch.linspace(5, 0.2, min(rows, columns))  # a spread of 25
    update = (left @ torch.diag(singular) @ right).reshape(shape)
    orthogonal = orthogonalize(update)
    assert orthogonal.shape == update.shape
    # In the update's own singular vectors the result is diagonal: only the lengths changed, each to about 1.
    lengths = left.T @ orthogonal.reshape(shape[0], -1) @ right.T
    torch.testing.assert_close(lengths, torch.diag(lengths.diagonal()), atol=1e-4, rtol=0)
    assert lengths.diagonal().min() > 0.6 and lengths.diagonal().max() < 1.25  # Newton-Schulz's band


def test_without_a_muon_group_the_optimizer_is_torchs_sgd_with_nesterov_momentum() -> None:
    torch.manual_seed(0)
    first, second = build_model(PLAIN, "gn"), build_model(PLAIN, "gn")
    second.load_state_dict(first.state_dict())
    ours = MuonWithSGD([{"params": list(first.parameters()), "weight_decay": 1e-3}], lr=0.1, momentum=0.9,
                       nesterov=True)
    torchs = torch.optim.SGD([{"params": list(second.parameters()), "weight_decay": 1e-3}], lr=0.1, momentum=0.9,
                             nesterov=True)
    for _ in range(3):
        batch = torch.randn(4, 3, 32, 32)
        for network, optimizer in ((first, ours), (second, torchs)):
            optimizer.zero_grad()
            network(batch).square().mean().backward()
            optimizer.step()
    for (name, ours_p), torchs_p in zip(first.named_parameters(), second.parameters(), strict=True):
        torch.testing.assert_close(ours_p, torchs_p, msg=name)


def test_muon_turns_every_filter_but_the_first_convs_by_about_its_rate_and_keeps_their_scale() -> None:
    config = replace(TINY, arch=PLAIN, muon_lr=0.05)
    torch.manual_seed(0)
    network = build_model(config.arch, config.norm)
    filters = muon_filters(network)
    convs = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    assert [id(p) for p in filters] == [id(m.weight) for m in convs[1:]]
    optimizer, _ = make_optimizer(network, config, steps=10)
    before = {id(p): p.detach().clone() for p in network.parameters()}
    network(torch.randn(8, 3, 32, 32)).logsumexp(1).mean().backward()
    optimizer.step()
    for weight in filters:
        rows = weight.detach().reshape(len(weight), -1)
        # Their scale fixed at sqrt(out channels) before the step (they start at about 0.58 of it), which then
        # moves it by a second-order amount.
        assert torch.isclose(rows.norm(), torch.tensor(len(weight) ** 0.5), rtol=1e-3)
        start = before[id(weight)].reshape(len(weight), -1)
        start = start / start.norm() * len(weight) ** 0.5
        turned = (rows - start).norm(dim=1) / start.norm(dim=1)  # each filter's turn, in radians for small ones
        assert 0.5 * config.muon_lr * 0.1 < turned.median() < 2 * config.muon_lr * 0.1  # a tenth: the warm-up
    # The first conv and the rest still take SGD's step at --lr.
    assert not torch.equal(convs[0].weight, before[id(convs[0].weight)])
    assert torch.isclose(convs[0].weight.norm(), before[id(convs[0].weight)].norm(), rtol=0.05)
    assert isinstance(optimizer, MuonWithSGD)
    assert type(make_optimizer(network, replace(config, muon_lr=0.0), steps=10)[0]) is torch.optim.SGD


def test_scale_free_holds_only_where_a_norm_follows_every_conv_but_the_first() -> None:
    def conv(cin: int, cout: int, bias: bool = False) -> nn.Conv2d:
        return nn.Conv2d(cin, cout, 3, padding=1, bias=bias)

    torch.manual_seed(0)
    normed = nn.Sequential(conv(3, 8), nn.GroupNorm(2, 8), nn.ReLU(), conv(8, 8), nn.GroupNorm(2, 8), nn.Flatten())
    assert scale_free(normed)
    assert scale_free(nn.Sequential(conv(3, 8), conv(8, 8), nn.BatchNorm2d(8)))  # through a conv to a norm
    assert not scale_free(nn.Sequential(conv(3, 8), nn.GroupNorm(2, 8), conv(8, 10)))  # a last conv gives the logits
    assert not scale_free(nn.Sequential(conv(3, 8), nn.GroupNorm(2, 8), conv(8, 8, bias=True), nn.GroupNorm(2, 8)))
    batch_normed = nn.Sequential(conv(3, 8), nn.BatchNorm2d(8), nn.ReLU(), conv(8, 8), nn.BatchNorm2d(8))
    batch_normed.eval()
    before = {name: tensor.clone() for name, tensor in batch_normed.state_dict().items()}
    generator = torch.get_rng_state()
    assert scale_free(batch_normed)
    assert torch.equal(generator, torch.get_rng_state())
    # Its mode, weights and running statistics as they were.
    assert not batch_normed.training
    assert all(torch.equal(before[name], tensor) for name, tensor in batch_normed.state_dict().items())


@pytest.mark.parametrize("norm", NORMS)
def test_muon_is_allowed_on_exactly_the_networks_whose_filters_are_scale_free(norm: str) -> None:
    for arch in ARCHITECTURES:
        network = build_model(arch, norm)
        allowed = scale_free(network)
        assert allowed == isinstance(network, ResidualNet), arch  # every residual network, and no other
        if allowed:
            muon_trainable.cache_clear()  # checked afresh, as a first config is
            generator = torch.get_rng_state()
            replace(TINY, arch=arch, norm=norm, gn_groups=ARCHITECTURES[arch].gn_groups, muon_lr=0.03)
            assert torch.equal(generator, torch.get_rng_state())  # a seeded run draws what it would without Muon
        else:
            with pytest.raises(ConfigError, match="--muon-lr"):
                replace(TINY, arch=arch, norm=norm, gn_groups=ARCHITECTURES[arch].gn_groups, muon_lr=0.03)


# ---- every lever on: resumable, and the same weights as without the interruption -----------------------

def test_with_every_lever_on_a_resumed_run_ends_with_the_same_weights(synthetic_split: Split,
                                                                       tmp_path: Path) -> None:
    config = replace(TINY, arch=PLAIN, **ALL_ON)
    straight = train(config, synthetic_split, synthetic_split.subset(64), CPU, tmp_path / "a", progress=False)

    def stop_after_first(epoch: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, synthetic_split, synthetic_split.subset(64), CPU, tmp_path / "b",
              on_epoch_end=stop_after_first, progress=False)
    reported: list[int] = []
    resumed = train(config, synthetic_split, synthetic_split.subset(64), CPU, tmp_path / "b", progress=False,
                    report=lambda record: reported.append(record["epoch"]))
    assert reported == [1, 2, 3]  # the saved epoch's record first, then the new ones
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


# ---- identity initialization -------------------------------------------------------------------------

def test_dirac_init_makes_each_conv_that_can_be_an_identity_one() -> None:
    torch.manual_seed(0)
    network = ResidualNet("bn", 4)
    shrinking = torch.nn.Conv2d(32, 16, 3, padding=1, bias=False)
    before = shrinking.weight.clone()
    assert dirac_init(torch.nn.Sequential(network, shrinking)) == 6  # every conv of the network, not the 32 -> 16
    assert torch.equal(shrinking.weight, before)
    first = network.features[0][0]  # 3 -> 24: the first three filters pass R, G, B through
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(torch.nn.functional.conv2d(x, first.weight[:3], padding=1), x)
    residual_conv = network.features[3].body[0][0]  # 32 -> 32: the identity
    y = torch.randn(2, 32, 8, 8)
    torch.testing.assert_close(residual_conv(y), y)
    separable = build_model("separable", "bn")
    depthwise = separable.features[1][0][0]
    assert dirac_init(separable) == 9  # its 1x1 convs widen, and its depthwise convs are identities
    torch.testing.assert_close(depthwise(torch.ones(1, 32, 4, 4)), torch.ones(1, 32, 4, 4))
    started = start_run(TrainConfig(arch=PLAIN, dirac_init=True, whiten_init=False), 10)
    torch.testing.assert_close(started.model.features[3].body[0][0](y), y)
    assert not torch.allclose(start_run(TrainConfig(arch=PLAIN, whiten_init=False), 10).model.features[3].body[0][0](y),
                              y)
    with pytest.raises(ConfigError, match="--dirac-init: the standardized network standardizes"):
        TrainConfig(arch="standardized", dirac_init=True)


# ---- residual blocks started as the identity -----------------------------------------------------------

@pytest.mark.parametrize("norm", ["bn", "gn", "ln"])
def test_zero_residual_init_starts_every_residual_block_as_the_identity(norm: str) -> None:
    torch.manual_seed(0)
    network = ResidualNet(norm, 4, activation="gelu").train()
    block = network.features[3]
    x = torch.randn(4, 32, 8, 8)
    assert not torch.allclose(block(x), x)
    assert zero_residual_init(network) == 1
    torch.testing.assert_close(block(x), x)
    assert zero_residual_init(build_model("separable", norm)) == 1  # its separable residual block too
    looped = ResidualNet(norm, 4, plan=("c24p", "c32p", "r32x2")).train().features[2]
    assert not torch.allclose(looped(x), x)
    assert zero_residual_init(looped) == 1
    torch.testing.assert_close(looped(x), x)  # each pass's branch starts at zero, not only the first's
    started = start_run(replace(TINY, norm=norm, zero_residual=True), 10).model.features[3]
    torch.testing.assert_close(started(x), x)


# ---- whitening initialization ------------------------------------------------------------------------

def test_whitening_init_makes_the_first_convs_outputs_decorrelated_with_unit_variance() -> None:
    generator = torch.Generator().manual_seed(0)
    # Smooth, correlated images: neighbouring pixels and channels move together, as in photos.
    noise = torch.randn(64, 1, 34, 34, generator=generator)
    smooth = torch.nn.functional.avg_pool2d(noise, 3, stride=1)
    images = smooth.repeat(1, 3, 1, 1) + 0.3 * torch.randn(64, 3, 32, 32, generator=generator)
    network = ResidualNet("bn", 4)
    assert whitening_init(network, images, eps=0.0) == 24
    first = network.features[0][0]
    outputs = torch.nn.functional.conv2d(images, first.weight).permute(1, 0, 2, 3).reshape(24, -1)
    outputs = outputs - outputs.mean(dim=1, keepdim=True)
    covariance = outputs[:12] @ outputs[:12].T / outputs.shape[1]
    torch.testing.assert_close(covariance, torch.eye(12), atol=1e-3, rtol=0)
    torch.testing.assert_close(outputs[12:], -outputs[:12])  # each direction also negated
    variances = (first.weight[:12].flatten(1).norm(dim=1) ** -2)
    assert torch.all(variances[:-1] >= variances[1:])  # the strongest direction first


def test_start_run_whitens_only_the_first_conv_and_draws_no_random_numbers(synthetic_split: Split) -> None:
    whitened = start_run(replace(TINY, whiten_init=True), 10, synthetic_split.images)
    plain = start_run(TINY, 10)
    expected = build_model(TINY.arch, TINY.norm)
    whitening_init(expected, standardize(synthetic_split.images[:5000]))
    first = "features.0.0.weight"
    torch.testing.assert_close(whitened.model.state_dict()[first], expected.state_dict()[first])
    assert not torch.equal(whitened.model.state_dict()[first], plain.model.state_dict()[first])
    for name, tensor in plain.model.state_dict().items():
        if name != first:
            assert torch.equal(tensor, whitened.model.state_dict()[name]), name
    with pytest.raises(ValueError, match="whiten-init needs the training images"):
        start_run(replace(TINY, whiten_init=True), 10)


# ---- flips --------------------------------------------------------------------------------------------

def flipped_per_image(images: torch.Tensor, augmentation: Augmentation, epoch: int, starts: torch.Tensor | None,
                      seed: int) -> dict[int, bool]:
    labels = torch.arange(len(images))
    flipped = {}
    generator = torch.Generator().manual_seed(seed)
    for batch, batch_labels in augmented_batches(reflect_pad(images, 0), labels, 16, generator,
                                                 augmentation=augmentation, epoch=epoch, starts_flipped=starts):
        for crop, label in zip(batch, batch_labels.tolist(), strict=True):
            source = augmented_source(images[label])
            assert torch.equal(crop, source) or torch.equal(crop, source.flip(-1))
            flipped[label] = torch.equal(crop, source.flip(-1))
    return flipped


def augmented_source(image: torch.Tensor) -> torch.Tensor:
    from model import standardize
    return standardize(image[None])[0]


def test_alternating_flips_show_each_image_both_ways_in_every_two_epochs() -> None:
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    starts = alternating_flips(64, seed=3)
    assert starts.sum() == 32 and torch.equal(starts, alternating_flips(64, seed=3))
    alternate = Augmentation(flips="alternate")
    epochs = [flipped_per_image(images, alternate, epoch, starts, seed=epoch) for epoch in range(3)]
    assert all(epochs[0][i] != epochs[1][i] and epochs[0][i] == epochs[2][i] for i in range(64))
    assert sum(epochs[0].values()) == 32
    # Random flips, for comparison, leave some images the same way round in two epochs running.
    random = [flipped_per_image(images, Augmentation(), epoch, None, seed=epoch) for epoch in range(2)]
    assert any(random[0][i] == random[1][i] for i in range(64))
    with pytest.raises(ValueError, match="starts_flipped"):
        next(augmented_batches(reflect_pad(images, 0), torch.arange(64), 16, torch.Generator(),
                               augmentation=alternate))


# ---- random resized crops and colour jitter ------------------------------------------------------------

def test_a_full_size_square_resized_crop_is_the_image_itself() -> None:
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    crops = random_resized_crop(reflect_pad(images, 0), 32, torch.Generator().manual_seed(1), torch.arange(6),
                                scale=1.0, ratio=1.0, flip=False)
    assert crops.dtype == torch.float32 and crops.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(crops, images.float())


def test_resized_crops_zoom_in_by_the_drawn_area_and_keep_flat_colours_flat() -> None:
    columns = (torch.arange(32) * 8).to(torch.uint8)  # each column 8 levels brighter than the last
    images = columns.expand(40, 3, 32, 32).contiguous()
    crops = random_resized_crop(reflect_pad(images, 0), 32, torch.Generator().manual_seed(0), torch.arange(40),
                                scale=0.25, ratio=1.0, flip=False)
    spans = crops[:, 0, 0].amax(1) - crops[:, 0, 0].amin(1)  # how many columns each crop covers, times 8
    assert (spans <= 31 * 8 + 1e-3).all() and (spans >= 15 * 8 - 1e-3).all() and spans.min() < 25 * 8
    widths = torch.stack([crop[0, 0].diff().mean() for crop in crops]) * 32 / 8  # source columns per crop
    assert ((widths > 15) & (widths < 32.01)).all()
    flat = torch.full((4, 3, 32, 32), 77, dtype=torch.uint8)
    assert torch.equal(random_resized_crop(reflect_pad(flat, 2), 32, torch.Generator(), torch.arange(4), 0.3, 2.0),
                       flat.float())


def test_colour_jitter_is_torchvisions_brightness_contrast_and_saturation_for_the_batch() -> None:
    images = torch.randint(70, 170, (5, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    jittered = color_jitter(images, 0.2, torch.Generator().manual_seed(4))
    factors = 1 + 0.2 * (2 * torch.rand(3, 5, generator=torch.Generator().manual_seed(4)) - 1)
    for i, image in enumerate(images.float() / 255):
        expected = tv.adjust_brightness(image, factors[0, i].item())
        expected = tv.adjust_contrast(expected, factors[1, i].item())
        expected = tv.adjust_saturation(expected, factors[2, i].item())
        torch.testing.assert_close(jittered[i] / 255, expected, atol=2e-3, rtol=0)
    assert torch.equal(color_jitter(images, 0.0, torch.Generator()), images.float())


def test_levers_change_the_batches_and_off_they_change_nothing() -> None:
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    padded, labels = reflect_pad(images, 2), torch.arange(40)

    def first_batch(**kwargs) -> torch.Tensor:
        return next(augmented_batches(padded, labels, 20, torch.Generator().manual_seed(5), **kwargs))[0]

    assert torch.equal(first_batch(), first_batch(augmentation=Augmentation()))
    assert not torch.equal(first_batch(), first_batch(augmentation=Augmentation(color_jitter=0.2)))
    assert not torch.equal(first_batch(), first_batch(augmentation=Augmentation(crop_scale=0.5)))


# ---- schedules ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", ["one-cycle", "cosine"])
def test_schedules_warm_up_then_decay_to_a_thousandth_of_the_peak(schedule: str) -> None:
    config = TrainConfig(lr=0.4, schedule=schedule, warmup_fraction=0.25)
    optimizer, scheduler = make_optimizer(torch.nn.Linear(2, 2), config, steps=96)  # warm-up ends at step 23
    rates = []
    for _ in range(96):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    peak = max(range(96), key=rates.__getitem__)
    assert rates[0] == pytest.approx(0.04) and rates[peak] == pytest.approx(0.4) and peak == 23
    assert rates[-1] == pytest.approx(0.0004)
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1:], strict=False))
    # Halfway down: linear is at the mean of the ends, the cosine too (its steepest point).
    assert rates[59] / 0.4 == pytest.approx((1 + 0.001) / 2, abs=1e-6)
    quarter = rates[41] / 0.4
    expected = (1 - 0.25 * 0.999) if schedule == "one-cycle" else 0.001 + 0.999 * 0.5 * (1 + math.cos(math.pi / 4))
    assert quarter == pytest.approx(expected, abs=1e-6)


# ---- the architecture candidates ------------------------------------------------------------------------

@pytest.mark.parametrize("arch", [name for name in ARCHS if name != "residual"])
def test_every_candidate_takes_2_4_and_8_groups_and_its_own_activation(arch: str) -> None:
    for groups in (2, 4, 8):
        build_model(arch, "gn", groups)
    network = repr(build_model(arch, "bn"))
    activation = {"residual-silu": "SiLU", "residual-gelu": "GELU"}.get(arch, "ReLU")
    assert activation in network and all(other not in network for other in {"SiLU", "GELU", "ReLU"} - {activation})
    # The search scales every candidate's rates from the same ones (RESIDUAL_LR); residual-silu, whose layers the
    # shipped network is built on, has the shipped rates.
    assert ARCHITECTURES[arch].lr == ARCHITECTURES["residual"].lr or arch == in_space(DEFAULT_ARCH)


def test_a_plan_whose_residual_block_changes_width_is_refused() -> None:
    with pytest.raises(ValueError, match="must keep the width"):
        ResidualNet("bn", 4, plan=("c24p", "r32"))
    with pytest.raises(ValueError, match="unknown layer"):
        ResidualNet("bn", 4, plan=("c24p", "x32"))


@pytest.mark.parametrize("token", ["c32x2", "r32x", "r32xa", "r32x2x2", "rx2"])
def test_only_a_residual_block_with_a_whole_number_of_passes_repeats(token: str) -> None:
    with pytest.raises(ValueError, match="unknown layer"):
        ResidualNet("bn", 4, plan=("c32p", token))


def test_a_residual_block_runs_at_least_once() -> None:
    with pytest.raises(ValueError, match="at least once"):
        ResidualNet("bn", 4, plan=("c32p", "r32x0"))


@pytest.mark.parametrize("norm", ["bn", "gn", "ln"])
def test_a_looped_residual_block_reuses_its_convs_with_norms_of_its_own_each_pass(norm: str) -> None:
    torch.manual_seed(0)
    once, twice = (ResidualNet(norm, 4, plan=("c32p", token)) for token in ("r32", "r32x2"))
    norms_of_a_pass = 2 * 2 * 32  # two norms, a scale and a shift per channel
    assert count_parameters(twice) == count_parameters(once) + norms_of_a_pass
    missing, unexpected = twice.load_state_dict(once.state_dict(), strict=False)  # the same convs, first norms
    assert not unexpected and missing and all(".later_passes.0." in key for key in missing)
    block, x = twice.features[1], torch.randn(4, 32, 8, 8)
    first_pass = once.features[1].eval()
    torch.testing.assert_close(block.eval()(x), first_pass(first_pass(x)))  # fresh norms act as the first's do
    with torch.no_grad():
        block.body[0][0].weight.mul_(2)  # the one conv both passes use
    assert not torch.allclose(block(x), first_pass(first_pass(x)))
    # The second pass goes through norms of its own: silenced, the block is its first pass alone.
    with torch.no_grad():
        block.body[0][0].weight.div_(2)
        nn.init.zeros_(block.later_passes[0][-1][0].weight)
        nn.init.zeros_(block.later_passes[0][-1][0].bias)
    torch.testing.assert_close(block(x), first_pass(x))


def test_a_standardized_conv_sees_only_the_shape_of_each_filter() -> None:
    torch.manual_seed(0)
    conv, x = StandardizedConv2d(8, 6, 3, padding=1, bias=False), torch.randn(2, 8, 5, 5)
    weight = conv.weight.detach()
    variance = weight.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
    standardized = (weight - weight.mean(dim=(1, 2, 3), keepdim=True)) / (variance + 1e-5).sqrt()
    torch.testing.assert_close(conv(x), nn.functional.conv2d(x, standardized, padding=1))
    before = conv(x)
    with torch.no_grad():  # each filter shifted and scaled up by its own amounts (a small epsilon aside)
        conv.weight.mul_(torch.rand(6, 1, 1, 1) * 5 + 1).add_(torch.randn(6, 1, 1, 1))
    torch.testing.assert_close(conv(x), before, rtol=3e-3, atol=3e-3)


def test_a_standardized_conv_keeps_its_filters_only_while_its_weights_are_unchanged() -> None:
    torch.manual_seed(0)
    conv, x = StandardizedConv2d(8, 6, 3, padding=1, bias=False), torch.randn(2, 8, 5, 5)

    def fresh() -> torch.Tensor:
        weight = conv.weight.detach()
        variance = weight.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        filters = (weight - weight.mean(dim=(1, 2, 3), keepdim=True)) / (variance + 1e-5).sqrt()
        return nn.functional.conv2d(x, filters, padding=1)

    # Training: the filters are computed anew, so the gradient reaches the raw weights.
    conv(x).square().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert conv.standardized_weight() is conv.standardized_weight()  # kept between calls
        torch.testing.assert_close(conv(x), fresh())
        conv.weight.mul_(torch.rand(6, 1, 1, 1) + 0.5).add_(torch.randn(6, 1, 1, 1))  # an optimizer step, say
        torch.testing.assert_close(conv(x), fresh())
        conv.load_state_dict({"weight": torch.randn(6, 8, 3, 3)})
        torch.testing.assert_close(conv(x), fresh())
        for _ in range(3):  # new storage each time; a freed address must not pass for the kept weights
            conv.weight.data = torch.randn(6, 8, 3, 3)
            torch.testing.assert_close(conv(x), fresh())
    # The app's frozen models: filters kept under inference_mode serve Grad-CAM's backward pass.
    conv.weight.data = torch.randn(6, 8, 3, 3)
    conv.weight.requires_grad_(False)
    with torch.inference_mode():
        conv(x)
    image = x.clone().requires_grad_(True)
    conv(image).sum().backward()
    assert image.grad is not None
    torch.testing.assert_close(conv(x), fresh())


@pytest.mark.parametrize("norm", ["bn", "gn", "ln"])
def test_the_standardized_network_standardizes_every_conv_but_the_whitened_first(norm: str) -> None:
    plain, standardized = build_model("residual-silu", norm), build_model("standardized", norm)
    convs = [m for m in standardized.modules() if isinstance(m, nn.Conv2d)]
    assert type(convs[0]) is nn.Conv2d and all(type(conv) is StandardizedConv2d for conv in convs[1:])
    assert count_parameters(standardized) == count_parameters(plain)
    assert standardized.state_dict().keys() == plain.state_dict().keys()
    with pytest.raises(ValueError, match="not depthwise-separable ones"):
        ResidualNet(norm, 4, plan=("c32p", "d64"), standardize=True)


def test_channel_attention_scales_each_channel_of_each_image_by_its_own_gate() -> None:
    torch.manual_seed(0)
    attention, x = ChannelAttention(), torch.randn(4, 6, 5, 5)
    assert count_parameters(attention) == 3
    gates = attention(x) / x
    assert torch.all((gates > 0) & (gates < 1))
    torch.testing.assert_close(gates, gates[..., :1, :1].expand_as(gates))  # one gate per channel and image
    torch.testing.assert_close(attention(x[:1]), attention(x)[:1])  # the other images change nothing
    with torch.no_grad():  # a kernel that reads a channel's own mean: brighter channels get the larger gate
        attention.conv.weight.copy_(torch.tensor([[[0.0, 1.0, 0.0]]]))
    means = x.mean(dim=(2, 3))
    torch.testing.assert_close((attention(x) / x)[..., 0, 0], means.sigmoid())


def test_the_attention_network_ends_every_layer_with_channel_attention() -> None:
    network = build_model("attention", "bn")
    layers = [m for m in network.modules() if isinstance(m, ConvNormAct)]
    assert len(layers) == 6 and all(isinstance(layer[-1], ChannelAttention) for layer in layers)
    assert count_parameters(network) == count_parameters(build_model("residual-silu", "bn")) + 6 * 3
    with pytest.raises(ValueError, match="not shared between a block's passes"):
        ResidualNet("bn", 4, plan=("c32p", "r32x2"), attention=True)
