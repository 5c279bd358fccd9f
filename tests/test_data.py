import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from model import MEAN, STD, standardize
from training.data import (
    DataError,
    Split,
    augmented_batches,
    batches,
    held_out_complement,
    hold_out_validation,
    load_split,
    random_crop_flip,
    reflect_pad,
    validation_indices,
)


def test_real_test_split_loads_as_uint8_tensors(cifar_test: Split) -> None:
    assert cifar_test.images.shape == (10_000, 3, 32, 32)
    assert cifar_test.images.dtype == torch.uint8
    assert sorted(cifar_test.labels.unique().tolist()) == list(range(10))
    assert torch.bincount(cifar_test.labels).tolist() == [1000] * 10


def test_missing_folder_says_where_it_looked_and_how_to_download(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        load_split(tmp_path / "nowhere", train=True)
    message = str(error.value)
    assert str((tmp_path / "nowhere").resolve()) in message
    assert "data_batch_1 is missing" in message
    assert "--download" in message and "--data-dir" in message


def test_incomplete_and_corrupt_files_are_named(tmp_path: Path, cifar_dir: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    shutil.copy(cifar_dir / "cifar-10-batches-py" / "batches.meta", folder)
    source = (cifar_dir / "cifar-10-batches-py" / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(source[: len(source) // 2])  # an interrupted download
    with pytest.raises(DataError) as error:
        load_split(tmp_path, train=False)
    message = str(error.value)
    assert "test_batch is corrupt or incomplete" in message
    assert "data_batch_3 is missing" in message
    assert "batches.meta" not in message


def test_failed_download_gives_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="Could not download CIFAR-10 into .*network is unreachable"):
        load_split(tmp_path, train=True, download=True)


def test_crops_are_windows_of_the_padded_image_and_some_are_flipped() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=generator)
    padded = reflect_pad(images, 4)
    assert padded.shape == (64, 3, 40, 40) and padded.dtype == torch.uint8
    crops = random_crop_flip(padded, 32, generator)
    assert crops.shape == (64, 3, 32, 32) and crops.dtype == torch.uint8
    flipped = 0
    for crop, source in zip(crops, padded, strict=True):
        windows = source.unfold(1, 32, 1).unfold(2, 32, 1)  # (3, 9, 9, 32, 32)
        as_is = (windows == crop[:, None, None]).all(0).all(-1).all(-1).any()
        mirrored = (windows == crop.flip(-1)[:, None, None]).all(0).all(-1).all(-1).any()
        assert as_is or mirrored
        flipped += int(mirrored and not as_is)
    assert 16 < flipped < 48


def test_crops_of_picked_images_come_from_those_images() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=generator)
    padded = reflect_pad(images, 2)
    crops = random_crop_flip(padded, 32, generator, index=torch.tensor([5, 2, 5]))
    assert crops.shape == (3, 3, 32, 32) and crops.is_contiguous(memory_format=torch.channels_last)
    for crop, source in zip(crops, padded[[5, 2, 5]], strict=True):
        windows = source.unfold(1, 32, 1).unfold(2, 32, 1)  # (3, 5, 5, 32, 32)
        assert any((windows == candidate[:, None, None]).all(0).all(-1).all(-1).any()
                   for candidate in (crop, crop.flip(-1)))


def test_standardize_standardizes_each_channel_whatever_the_memory_layout() -> None:
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    expected = (images.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    as_is = standardize(images)
    channels_last = standardize(images.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(as_is, expected, atol=1e-5)
    assert torch.equal(as_is, channels_last)
    assert channels_last.is_contiguous(memory_format=torch.channels_last)


def test_augmented_batches_match_cropping_each_image_by_hand() -> None:
    """Pins the batches themselves: same draws, same crops, same flips, same standardization."""
    images = torch.randint(0, 256, (21, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(21)
    padded = reflect_pad(images, 2)
    produced = list(augmented_batches(padded, labels, 10, torch.Generator().manual_seed(7)))

    replay = torch.Generator().manual_seed(7)
    order = torch.randperm(21, generator=replay)
    assert len(produced) == 2  # the last batch of one image is dropped
    for start, (batch, batch_labels) in zip((0, 10), produced, strict=True):
        index = order[start : start + 10]
        dy, dx = torch.randint(0, 5, (2, 10, 1), generator=replay)
        flip = torch.rand(10, 1, generator=replay) < 0.5
        expected = []
        for i, image in enumerate(padded[index]):
            crop = image[:, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
            expected.append(crop.flip(-1) if flip[i] else crop)
        assert torch.equal(batch_labels, labels[index])
        assert torch.equal(batch, standardize(torch.stack(expected)))
        assert batch.dtype == torch.float32 and batch.is_contiguous(memory_format=torch.channels_last)


def test_shuffled_batches_cover_every_image_once(synthetic_split: Split) -> None:
    seen = torch.cat([labels for _, labels in batches(Split(torch.arange(256), synthetic_split.labels), 100)])
    assert seen.tolist() == synthetic_split.labels.tolist()
    index_split = Split(torch.arange(256), torch.arange(256))
    shuffled = torch.cat([i for i, _ in batches(index_split, 100, torch.Generator().manual_seed(1))])
    assert sorted(shuffled.tolist()) == list(range(256)) and shuffled.tolist() != list(range(256))


def test_validation_split_is_fixed_balanced_and_disjoint() -> None:
    labels = torch.arange(10).repeat_interleave(60)[torch.randperm(600, generator=torch.Generator().manual_seed(1))]
    # Each image's pixels are its own position, so the splits' images say where they came from.
    images = torch.arange(600).view(600, 1, 1, 1).expand(600, 3, 32, 32)
    split = Split(images, labels)
    indices = validation_indices(labels, per_class=20)
    assert torch.equal(indices, validation_indices(labels, per_class=20))  # the same in every run
    assert len(indices) == 200 and len(set(indices.tolist())) == 200
    assert torch.bincount(labels[indices], minlength=10).tolist() == [20] * 10
    rest, held_out, _ = hold_out_validation(split, per_class=20)
    kept, held = rest.images[:, 0, 0, 0].tolist(), held_out.images[:, 0, 0, 0].tolist()
    assert len(held) == 200 and len(kept) == 400  # some images are kept: the check below is not vacuous
    assert held == indices.tolist()
    assert not set(kept) & set(held) and sorted(kept + held) == list(range(600))
    assert torch.equal(rest.labels, labels[kept]) and torch.equal(held_out.labels, labels[held])


def test_the_real_validation_split_is_5000_images_500_per_class_with_a_stable_id(cifar_train: Split) -> None:
    rest, held_out, identity = hold_out_validation(cifar_train)
    assert len(held_out) == 5000 and len(rest) == 45_000
    assert torch.bincount(held_out.labels, minlength=10).tolist() == [500] * 10
    assert identity == "1bc634292fd0"  # recorded in results: a change here changes every validation number
    # Over all 50,000 positions: the held-out and kept images are disjoint and cover the training set.
    held = validation_indices(cifar_train.labels)
    kept = held_out_complement(len(cifar_train), held)
    assert not set(held.tolist()) & set(kept.tolist()) and len(held) + len(kept) == 50_000
    assert torch.equal(held_out.images, cifar_train.images[held]) and torch.equal(rest.images, cifar_train.images[kept])
