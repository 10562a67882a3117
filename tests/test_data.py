"""Datasets by name (real Fashion-MNIST files, IDX parsing, offline errors) and loaders."""

from __future__ import annotations

import gzip
import time

import numpy as np
import pytest
import torch

from dard_plugin.data import (
    BatchAugment,
    DatasetNotFoundError,
    EpochBatchSampler,
    get_loader,
    load_dataset,
    make_loader,
    read_idx,
    set_loader_epoch,
)
from dard_plugin.data import fashion_mnist as fmnist_module

DEBIAN = fmnist_module.DEBIAN_DIR
needs_debian = pytest.mark.skipif(
    not (DEBIAN / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed (scripts/install.sh installs it)",
)


def write_idx(path, array: np.ndarray, compress: bool = True) -> None:
    codes = {np.uint8: 0x08}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    if compress:
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def write_fake_fashion_mnist(folder, n: int = 12, compress: bool = True) -> np.ndarray:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    suffix = ".gz" if compress else ""
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress)
    return images


@needs_debian
def test_fashion_mnist_from_the_debian_files() -> None:
    images, labels = load_dataset("fashion-mnist", train=False)
    assert images.shape == (10000, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (10000,) and labels.dtype == torch.int64
    assert images.min() == 0.0 and images.max() == 1.0
    assert torch.equal(torch.bincount(labels), torch.full((10,), 1000))
    train, train_labels = load_dataset("fashion-mnist", n_examples=500)
    assert train.shape == (500, 1, 28, 28) and train_labels.shape == (500,)


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("layout", ["", "FashionMNIST/raw"])
def test_fashion_mnist_from_a_folder(tmp_path, compress: bool, layout: str) -> None:
    folder = tmp_path / layout if layout else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    raw = write_fake_fashion_mnist(folder, compress=compress)
    images, labels = load_dataset("fashion-mnist", root=tmp_path, train=True)
    assert images.shape == (12, 1, 28, 28)
    assert torch.equal(images[:, 0], torch.from_numpy(raw).float() / 255)  # root wins
    assert labels.tolist() == [i % 10 for i in range(12)]


def test_offline_without_files_fails_fast_and_leaves_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(fmnist_module, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(fmnist_module, "MIRROR", "http://dard-plugin.invalid/")
    root = tmp_path / "nested" / "root"
    start = time.perf_counter()
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("fashion-mnist", root=root)
    assert time.perf_counter() - start < 1.0
    message = str(caught.value)
    assert str(root) in message and "no-debian" not in message  # a given root alone
    assert "apt-get install dataset-fashion-mnist" in message
    assert not (tmp_path / "nested").exists()
    with pytest.raises(DatasetNotFoundError, match="root=DIR"):
        load_dataset("fashion-mnist", root=root, download=False)


def test_a_given_root_without_the_files_is_an_error_not_another_copy(tmp_path) -> None:
    """The Debian copy is read only where no root is given: a mistyped or empty root must
    not train or evaluate on other data than the folder named."""
    assert fmnist_module._find_in(fmnist_module.DEBIAN_DIR, train=False) is not None
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetNotFoundError, match=f"not found in {empty}[ (]"):
        load_dataset("fashion-mnist", train=False, root=empty, n_examples=5, download=False)
    assert load_dataset("fashion-mnist", train=False, n_examples=5)[0].shape == (5, 1, 28, 28)


def test_cifar_offline_error_leaves_no_folder(tmp_path) -> None:
    root = tmp_path / "a" / "b"
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py"):
        load_dataset("cifar10", root=root, download=False)
    assert not (tmp_path / "a").exists()


def test_read_idx_rejects_bad_files(tmp_path) -> None:
    html = tmp_path / "page.gz"
    html.write_bytes(gzip.compress(b"<!DOCTYPE html><html></html>"))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(html)
    truncated = tmp_path / "short"
    write_idx(truncated, np.zeros((4, 28, 28), dtype=np.uint8), compress=False)
    truncated.write_bytes(truncated.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(truncated)


def test_bad_dataset_arguments(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"dataset must be one of \['cifar10'"):
        load_dataset("mnist")
    write_fake_fashion_mnist(tmp_path)
    with pytest.raises(ValueError, match="n_examples must be at most 12"):
        load_dataset("fashion-mnist", root=tmp_path, n_examples=13)
    with pytest.raises(ValueError, match="n_examples"):
        load_dataset("fashion-mnist", root=tmp_path, n_examples=0)


def test_batch_augment_crops_and_flips_exactly() -> None:
    images = torch.rand(32, 3, 8, 8)
    same, _ = BatchAugment(padding=0, flip=False)((images, torch.zeros(32)))
    assert torch.equal(same, images)
    augmented, _ = BatchAugment(padding=2, flip=True, seed=1)((images, torch.zeros(32)))
    assert augmented.shape == images.shape and augmented.min() >= 0 and augmented.max() <= 1
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for i in range(32):  # each output is one 8x8 window of the padded image, maybe flipped
        windows = [padded[i, :, r : r + 8, c : c + 8] for r in range(5) for c in range(5)]
        assert any(
            torch.equal(augmented[i], w) or torch.equal(augmented[i], w.flip(-1)) for w in windows
        )
    assert not torch.equal(augmented, images)


def test_loader_is_seeded_per_epoch_and_resumable() -> None:
    images, labels = torch.rand(50, 1, 6, 6), torch.arange(50)

    def epoch_batches(seed: int, epoch: int) -> list[torch.Tensor]:
        loader = make_loader(
            images, labels, batch_size=16, augment=BatchAugment(seed=seed), seed=seed
        )
        set_loader_epoch(loader, epoch)
        return [x for x, _ in loader]

    first = epoch_batches(0, 3)
    assert all(torch.equal(a, b) for a, b in zip(first, epoch_batches(0, 3), strict=True))
    assert not torch.equal(first[0], epoch_batches(0, 4)[0])
    assert not torch.equal(first[0], epoch_batches(1, 3)[0])
    loader = make_loader(images, labels, batch_size=16, shuffle=True)
    seen = torch.cat([y for _, y in loader])
    assert sorted(seen.tolist()) == list(range(50)) and len(loader) == 4
    global_state = torch.get_rng_state()
    list(loader)
    assert torch.equal(torch.get_rng_state(), global_state)


def test_sampler_shards_across_ranks() -> None:
    shards = [list(EpochBatchSampler(10, 3, num_replicas=3, rank=r, seed=5)) for r in range(3)]
    flat = [torch.cat(s).tolist() for s in shards]
    assert all(len(f) == 4 for f in flat)  # ceil(10 / 3), padded by wrapping
    assert set().union(*map(set, flat)) == set(range(10))
    with pytest.raises(ValueError, match="rank"):
        EpochBatchSampler(10, 3, num_replicas=2, rank=2)


@needs_debian
def test_named_loader_augments_train_only() -> None:
    train = get_loader("fashion-mnist", n_examples=256, batch_size=128, seed=0)
    test = get_loader("fashion-mnist", train=False, n_examples=256, batch_size=128)
    raw, _ = load_dataset("fashion-mnist", train=False, n_examples=256)
    assert torch.equal(torch.cat([x for x, _ in test]), raw)
    x, y = next(iter(train))
    assert x.shape == (128, 1, 28, 28) and y.dtype == torch.int64


def test_a_download_without_root_is_read_back_from_where_it_went(tmp_path, monkeypatch) -> None:
    """Without ``root``, a download goes to ``./data``, which was never searched: a second
    call offline failed, and online downloaded again."""
    monkeypatch.setattr(fmnist_module, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(fmnist_module, "MIRROR", "http://dard-plugin.invalid/")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    raw = write_fake_fashion_mnist(tmp_path / "data", compress=True)
    images, _ = load_dataset("fashion-mnist", train=True, download=False)
    assert torch.equal(images[:, 0], torch.from_numpy(raw).float() / 255)


@pytest.mark.parametrize("train", ["False", "test", None, 0])
def test_the_split_flag_must_be_a_bool(train) -> None:
    """``train="False"`` (a config string) read the training split, 60,000 images for an
    evaluation meant for the test split. Only a bool is taken now, before any file."""
    with pytest.raises(TypeError, match="train must be a bool"):
        load_dataset("fashion-mnist", train=train, n_examples=4)


def test_each_rank_of_a_multi_process_loader_draws_its_own_augmentation() -> None:
    """Every rank once drew the same crop offsets and flips for its own images (one seeded
    augmentation object shared by the ranks); rank 0 keeps the single process's draws.
    Every image here is the same pattern, so a batch shows only the draws."""
    from dard_plugin.data import standard_augment

    pattern = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    images, labels = pattern.repeat(64, 1, 1, 1), torch.arange(64) % 10

    def batches(rank: int, replicas: int) -> list[torch.Tensor]:
        augment = standard_augment("fashion-mnist", seed=0)
        loader = make_loader(images, labels, batch_size=8, augment=augment, seed=0,
                             num_replicas=replicas, rank=rank)  # fmt: skip
        return [batch for batch, _ in loader]

    single, zero, one = batches(0, 1), batches(0, 2), batches(1, 2)
    assert len(zero) == len(one) == 4
    assert all(not torch.equal(a, b) for a, b in zip(zero, one, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(zero, single, strict=False))  # rank 0's


def test_a_rank_keeps_an_augmentation_subclass_and_a_plain_callable() -> None:
    """The per-rank copy once rebuilt a ``BatchAugment`` subclass as the base class (its own
    augmentation dropped) and failed on a plain callable under two processes."""

    class Inverted(BatchAugment):
        def __call__(self, batch):
            images, labels = super().__call__(batch)
            return 1.0 - images, labels

    images, labels = torch.zeros(16, 1, 8, 8), torch.arange(16) % 10
    for augment in (Inverted(padding=0, flip=False), lambda batch: (batch[0] + 0.5, batch[1])):
        loader = make_loader(images, labels, batch_size=8, augment=augment, num_replicas=2,
                             rank=1)  # fmt: skip
        batch, _ = next(iter(loader))
        assert float(batch.min()) >= 0.5  # the given augmentation ran


def test_an_augmentation_without_a_seed_takes_its_loaders_and_its_trainers() -> None:
    """`SATTrainer(seed=1)` and `seed=2` with `fit(augment=BatchAugment(padding=2))` drew the
    same crops (the augmentation's own seed 0), where the trainer's seed is documented to
    seed augmentation; a seed given to the augmentation is still kept."""
    from dard_plugin.data import standard_augment
    from dard_plugin.models import create
    from dard_plugin.training import SATTrainer

    images, labels = torch.rand(32, 1, 8, 8), torch.arange(32)

    def crops(augment: BatchAugment, seed: int) -> torch.Tensor:
        loader = make_loader(
            images, labels, batch_size=32, shuffle=False, augment=augment, seed=seed
        )
        return next(iter(loader))[0]

    assert not torch.equal(crops(BatchAugment(padding=2), 1), crops(BatchAugment(padding=2), 2))
    assert torch.equal(crops(BatchAugment(padding=2), 0), crops(BatchAugment(padding=2, seed=0), 5))
    assert torch.equal(
        crops(BatchAugment(padding=2, seed=7), 1), crops(BatchAugment(padding=2, seed=7), 2)
    )
    assert standard_augment("fashion-mnist").seed is None
    assert repr(BatchAugment(padding=2).seeded(3)) == "BatchAugment(padding=2, flip=True, seed=3)"

    used: list[int | None] = []

    class Recorded(BatchAugment):
        def __call__(self, batch):
            used.append(self.seed)
            return super().__call__(batch)

    x, y = torch.rand(16, 1, 28, 28), torch.arange(16) % 10
    for seed in (1, 2):
        model = create("tiny-cnn", num_classes=10)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        trainer = SATTrainer(
            model, optimizer=optimizer, seed=seed, attack={"eps": 0.1, "steps": 1}, verbose=False
        )
        used.clear()
        trainer.fit(x, y, batch_size=16, nb_epochs=1, augment=Recorded(padding=1))
        assert used and set(used) == {seed}
