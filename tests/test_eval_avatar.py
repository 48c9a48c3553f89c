"""tools/eval_avatar.py's jitter yardstick: the sub-pixel shift between two crops is found to a
few hundredths of a pixel (the goal it judges is 0.3 px RMS)."""
from __future__ import annotations

import numpy as np
import pytest

from tools.eval_avatar import subpixel_shift


def _texture(n=240, seed=0):
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(n)
    lowpass = np.exp(-(f[:, None] ** 2 + f[None, :] ** 2) * 200)
    return np.real(np.fft.ifft2(np.fft.fft2(rng.normal(0, 1, (n, n))) * lowpass))


def _shifted(image, dx, dy):
    fy, fx = np.fft.fftfreq(image.shape[0]), np.fft.fftfreq(image.shape[1])
    phase = np.exp(-2j * np.pi * (fx[None, :] * dx + fy[:, None] * dy))
    return np.real(np.fft.ifft2(np.fft.fft2(image) * phase))


@pytest.mark.parametrize("dx, dy", [(0.0, 0.0), (0.37, -0.8), (0.1, 0.05), (-0.6, 0.3)])
def test_a_subpixel_shift_is_measured_to_a_few_hundredths(dx, dy):
    image = _texture()
    a, b = image[60:180, 60:180], _shifted(image, dx, dy)[60:180, 60:180]
    assert subpixel_shift(a, b) == pytest.approx([dx, dy], abs=0.03)
