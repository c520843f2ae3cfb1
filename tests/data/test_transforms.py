import numpy as np
import torch

from cxr.config import AugmentConfig
from cxr.data.dataset import DecodedImageDataset
from cxr.data.transforms import normalise, train_augmentation

# every intensity and acquisition augmentation off (the defaults turn on mild ones): the affine alone
PLAIN = dict(contrast=0.0, brightness=0.0, low_res=0.0, noise=0.0, blur=0.0)


def _image():
    img = np.zeros((32, 32), np.uint8)
    img[4:12, 4:12] = 255
    return img


def test_normalise_matches_formula():
    x = normalise(_image()[None], 0.5, 0.25)
    assert x.shape == (1, 1, 32, 32)
    assert torch.allclose(x[0, 0, 5, 5], torch.tensor((1.0 - 0.5) / 0.25))
    assert torch.allclose(x[0, 0, 20, 20], torch.tensor((0.0 - 0.5) / 0.25))


def test_augmentation_is_seeded_train_only_and_keeps_black_padding():
    images = np.stack([_image()] * 4)
    cfg = AugmentConfig(rotation_deg=30, shift=0.2, zoom=0.2, prob=1.0, contrast=0.3, brightness=0.2)
    ds_a = DecodedImageDataset(images, [0, 1, 0, 1], 0.0, 1.0, train_augmentation(cfg, 32, seed=1))
    ds_b = DecodedImageDataset(images, [0, 1, 0, 1], 0.0, 1.0, train_augmentation(cfg, 32, seed=1))
    plain = DecodedImageDataset(images, [0, 1, 0, 1], 0.0, 1.0)
    xa, xb, x0 = ds_a[0][0], ds_b[0][0], plain[0][0]
    assert torch.equal(xa, xb)  # same seed, same augmentation
    assert not torch.equal(xa, x0)  # it did something
    assert torch.equal(x0, normalise(images[0], 0.0, 1.0))  # eval items are untouched
    assert xa.min() >= 0 and xa.shape == (1, 32, 32)  # padding is black, not negative


def test_flip_only_when_enabled():
    plain = AugmentConfig(**PLAIN)
    names = [type(t).__name__ for t in train_augmentation(plain, 32, 0).transforms]
    assert names == ["RandAffine"]
    flipped = plain.model_copy(update={"hflip": True, "contrast": 0.2})
    names = [type(t).__name__ for t in train_augmentation(flipped, 32, 0).transforms]
    assert names == ["RandAffine", "RandFlip", "RandAdjustContrast"]
    assert "RandFlip" not in [type(t).__name__ for t in train_augmentation(AugmentConfig(), 32, 0).transforms]


def test_low_res_removes_fine_detail_and_keeps_the_image():
    checker = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)  # finest possible detail
    images = np.stack([checker] * 2)
    cfg = AugmentConfig(**{**PLAIN, "prob": 0.0, "low_res": 1.0})  # no affine: only the resolution changes
    x = DecodedImageDataset(images, [0, 1], 0.0, 1.0, train_augmentation(cfg, 64, seed=0))[0][0]
    detail = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean()  # noqa: E731
    plain = normalise(checker, 0.0, 1.0)
    assert x.shape == plain.shape and detail(x) < 0.5 * detail(plain)
    assert abs(float(x.mean()) - float(plain.mean())) < 0.05  # brightness kept: only resolution is lost
    off = [type(t).__name__ for t in train_augmentation(AugmentConfig(**PLAIN), 64, 0).transforms]
    assert "RandSimulateLowResolution" not in off


def test_noise_and_blur_follow_their_settings_and_keep_a_film_in_range():
    """noise adds grain up to its std, blur softens a sharp edge; off (0) adds neither; pixels stay 0..1."""
    off = [type(t).__name__ for t in train_augmentation(AugmentConfig(**PLAIN), 64, 0).transforms]
    assert "RandGaussianNoise" not in off and "RandGaussianSmooth" not in off
    flat = torch.full((1, 64, 64), 0.5)
    noisy = train_augmentation(AugmentConfig(**{**PLAIN, "prob": 0.0, "noise": 0.1}), 64, 0)
    stds = [float(noisy(flat).std()) for _ in range(40)]
    assert 0.02 < max(stds) <= 0.11 and min(stds) < 0.01  # half the films untouched, std drawn from 0..0.1
    white = torch.ones((1, 64, 64))
    assert all(0.0 <= float(noisy(white).min()) and float(noisy(white).max()) <= 1.0 for _ in range(10))
    edge = torch.zeros((1, 64, 64))
    edge[:, :, 32:] = 1.0
    blurred = train_augmentation(AugmentConfig(**{**PLAIN, "prob": 0.0, "blur": 3.0}), 64, 0)
    softened = [float(blurred(edge)[0, 32, 31]) for _ in range(30)]
    assert max(softened) > 0.05 and min(softened) == 0.0  # a third of the films blurred across the edge
