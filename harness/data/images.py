"""One image to a normalised ``float32`` CHW array (Pillow + NumPy only), the same in every framework.

The train-time transform follows torchvision's ``RandomResizedCrop(size)`` +
``RandomHorizontalFlip()`` + ``ColorJitter(0.4, 0.4, 0.4)`` (brightness, contrast,
saturation in that fixed order); the eval transform follows
``Resize(round(size / resize_ratio), BICUBIC)`` + ``CenterCrop(size)``. All randomness comes from the
``numpy.random.Generator`` passed in, never from global state.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageEnhance

from harness.errors import HarnessError, one_line

if TYPE_CHECKING:
    from harness.config import Settings

__all__ = ["MEAN", "STD", "Preprocess", "preprocess_for", "to_rgb"]

#: ImageNet channel mean and standard deviation (RGB, on the 0..1 scale).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

_RRC_SCALE = (0.08, 1.0)
_RRC_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))
_JITTER = 0.4  # brightness, contrast and saturation factor in [1 - 0.4, 1 + 0.4]
# AlexNet's PCA of ImageNet RGB (0..1 scale), for lighting noise.
LIGHTING_EIGVAL = np.array([0.2175, 0.0188, 0.0045], dtype=np.float64)
LIGHTING_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                            [-0.5808, -0.0045, -0.8140],
                            [-0.5836, -0.6948, 0.4203]], dtype=np.float64)


def _random_resized_crop_box(width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """torchvision ``RandomResizedCrop.get_params``: return ``(top, left, h, w)``."""
    area = width * height
    for _ in range(10):
        target_area = area * rng.uniform(*_RRC_SCALE)
        aspect = math.exp(rng.uniform(*_RRC_LOG_RATIO))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    # Fallback: central crop with the aspect ratio clamped to the allowed range.
    in_ratio = width / height
    lo, hi = 3 / 4, 4 / 3
    if in_ratio < lo:
        w, h = width, round(width / lo)
    elif in_ratio > hi:
        w, h = round(height * hi), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit RGB, by its meaning rather than by clipping: 16-bit greyscale (``I;16*``, and
    ``I`` holding values past 255) is scaled from 0..65535, float greyscale (``F``) from 0..1 when it lies there
    (else clipped to 0..255), palette images with transparency go through RGBA, and alpha is dropped; CMYK,
    YCbCr, LAB, 1-bit and 8-bit greyscale use Pillow's own conversion. (A plain ``convert("RGB")`` clips a 16-bit
    image to almost all white.)"""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I") or mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and a.size and a.max() > 255):
            a = a / 257.0
        elif mode == "F" and a.size and a.min() >= 0 and a.max() <= 1:
            a = a * 255.0
        grey = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
        return grey.convert("RGB")
    if mode == "P" and "transparency" in im.info:
        return im.convert("RGBA").convert("RGB")
    return im.convert("RGB")


class Preprocess:
    """One image (PIL) to a normalised ``float32`` array of shape ``(3, size, size)``.

    * ``train and augment``: random-resized-crop (scale 0.08..1, ratio 3/4..4/3,
      BILINEAR), horizontal flip with p=0.5, brightness/contrast/saturation
      jitter of 0.4 each;
    * ``train and not augment``: BILINEAR resize straight to ``size x size``;
    * eval: BICUBIC resize of the shorter side to ``round(size / resize_ratio)``,
      then a centre crop of ``size``.

    Instances hold only numbers, so they pickle into DataLoader workers.
    """

    def __init__(self, image_size: int, train: bool, augment: bool = True,
                 mean: Sequence[float] = MEAN, std: Sequence[float] = STD,
                 resize_ratio: float = 0.875, jitter: float = _JITTER, hue: float = 0.0,
                 lighting: float = 0.0) -> None:
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        if not 0 < resize_ratio <= 1:
            raise ValueError(f"resize_ratio must be in (0, 1], got {resize_ratio}")
        self.image_size = int(image_size)
        self.train = bool(train)
        self.augment = bool(augment)
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue jitter must be in [0, 0.5], got {hue}")
        self.resize_ratio = float(resize_ratio)
        self.jitter, self.hue, self.lighting = float(jitter), float(hue), float(lighting)
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)

    def __repr__(self) -> str:
        return (f"Preprocess(image_size={self.image_size}, train={self.train}, augment={self.augment}, "
                f"resize_ratio={self.resize_ratio}, jitter={self.jitter}, hue={self.hue}, lighting={self.lighting})")

    def transform(self, img: Image.Image, rng: np.random.Generator | None) -> Image.Image:
        """The geometric and colour transform alone: an RGB image of ``size x size``.

        ``rng`` may be None only when nothing is random (eval, or train without augment).
        """
        img = to_rgb(img)
        s = self.image_size
        if self.train and self.augment:
            if rng is None:
                raise ValueError("Preprocess(train=True, augment=True) needs a numpy Generator")
            top, left, h, w = _random_resized_crop_box(img.width, img.height, rng)
            img = img.crop((left, top, left + w, top + h)).resize((s, s), Image.Resampling.BILINEAR)
            if rng.random() < 0.5:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            if self.jitter > 0:
                for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
                    img = enhance(img).enhance(rng.uniform(max(0.0, 1 - self.jitter), 1 + self.jitter))
            if self.hue > 0:  # torchvision's adjust_hue: shift H in HSV, wrapping around
                hue, sat, val = img.convert("HSV").split()
                shift = round(rng.uniform(-self.hue, self.hue) * 255)
                hue = Image.fromarray((np.asarray(hue, dtype=np.int16) + shift).astype(np.uint8), "L")
                img = Image.merge("HSV", (hue, sat, val)).convert("RGB")
            return img
        if self.train:
            return img.resize((s, s), Image.Resampling.BILINEAR)
        short = round(s / self.resize_ratio)
        w, h = img.size
        size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
        img = img.resize(size, Image.Resampling.BICUBIC)
        top = round((img.height - s) / 2.0)
        left = round((img.width - s) / 2.0)
        return img.crop((left, top, left + s, top + s))

    def __call__(self, img: Image.Image, rng: np.random.Generator | None) -> np.ndarray:
        """Transform ``img`` and normalise it to ``(x / 255 - mean) / std``, CHW float32."""
        pixels = np.asarray(self.transform(img, rng), dtype=np.uint8)
        x = np.array(pixels.transpose(2, 0, 1), dtype=np.float32, order="C")
        x /= np.float32(255)
        # AlexNet PCA lighting noise, on the 0..1 scale (rng is set: transform() refused None for augmentation)
        if self.train and self.augment and self.lighting > 0 and rng is not None:
            alpha = rng.normal(0.0, self.lighting, 3)
            x += (LIGHTING_EIGVEC @ (alpha * LIGHTING_EIGVAL)).astype(np.float32).reshape(3, 1, 1)
        x -= self.mean
        x /= self.std
        return x

    def load(self, path: str, rng: np.random.Generator | None) -> np.ndarray:
        """Open ``path`` with Pillow, convert to RGB and apply :meth:`__call__`."""
        try:
            with Image.open(path) as im:
                img = to_rgb(im)
                img.load()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise HarnessError(f"{path}: cannot decode image: {one_line(exc)}") from None
        return self(img, rng)


def preprocess_for(settings: Settings, train: bool, mean: Sequence[float] = MEAN,
                   std: Sequence[float] = STD) -> Preprocess:
    """The :class:`Preprocess` a case's settings describe."""
    s = settings
    return Preprocess(s.image_size, train=train, augment=s.augment, mean=mean, std=std,
                      resize_ratio=s.eval_resize_ratio, jitter=s.color_jitter, hue=s.hue_jitter, lighting=s.lighting)
