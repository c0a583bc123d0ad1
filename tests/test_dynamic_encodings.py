"""Windowed positional encodings and their schedules (Nerfies / HyperNeRF), and per-frame latents.

Expected values are worked out by hand from the papers' formulas:
    w_j(alpha) = (1 - cos(pi * clamp(alpha - j, 0, 1))) / 2          (Nerfies' window)
    alpha(t) = m t / N                                                (Nerfies, linear over N steps)
    hyper alpha: 0 for 1000 steps, then linear 0 -> m over 10000      (HyperNeRF's delayed window)
"""

from __future__ import annotations

import math

import pytest
import torch

from nerflite.fields.encodings import PositionalEncoding, WindowedPositionalEncoding, linear_alpha, window_weights
from nerflite.fields.latents import AppearanceCodes, FrameLatents, interpolate_latents


@pytest.mark.parametrize(
    "alpha, expected",
    [
        (0.0, [0.0, 0.0, 0.0, 0.0]),
        (0.25, [(1 - math.cos(math.pi / 4)) / 2, 0.0, 0.0, 0.0]),  # 0.1464...
        (0.5, [0.5, 0.0, 0.0, 0.0]),
        (1.0, [1.0, 0.0, 0.0, 0.0]),
        (1.5, [1.0, 0.5, 0.0, 0.0]),
        (2.75, [1.0, 1.0, (1 - math.cos(0.75 * math.pi)) / 2, 0.0]),  # 0.8535...
        (4.0, [1.0, 1.0, 1.0, 1.0]),
        (9.0, [1.0, 1.0, 1.0, 1.0]),
    ],
)
def test_window_weights(alpha, expected):
    torch.testing.assert_close(window_weights(alpha, 4), torch.tensor(expected), rtol=0, atol=1e-7)


def test_warp_window_schedule_is_nerfies_m_t_over_n():
    """HyperNeRF's warp window: linear from 0 to warp_max_deg = 6 over 80000 steps, then held."""
    for step, alpha in [(0, 0.0), (1, 6 / 80000), (20000, 1.5), (40000, 3.0), (80000, 6.0), (250000, 6.0)]:
        assert linear_alpha(step, 6, 80000) == pytest.approx(alpha, abs=1e-12)
    assert linear_alpha(0, 6, 0) == 6.0  # no annealing


def test_hyper_window_schedule_is_delayed():
    """HyperNeRF's DELAYED_HYPER_ALPHA_SCHED with hyper_point_max_deg = 1: constant 0 for 1000 steps,
    then linear 0 -> 1 over 10000 steps."""
    for step, alpha in [(0, 0.0), (999, 0.0), (1000, 0.0), (3500, 0.25), (6000, 0.5), (11000, 1.0), (50000, 1.0)]:
        assert linear_alpha(step, 1, 10000, delay=1000) == pytest.approx(alpha, abs=1e-12)
    w = window_weights(linear_alpha(6000, 1, 10000, delay=1000), 1)  # alpha 0.5: (1 - cos(pi/2)) / 2
    torch.testing.assert_close(w, torch.tensor([0.5]))


def test_windowed_encoding_scales_each_octave_and_never_the_input():
    x = torch.randn(5, 3)
    plain = PositionalEncoding(4, include_input=True, in_dim=3)(x)
    enc = WindowedPositionalEncoding(4, include_input=True, in_dim=3)
    torch.testing.assert_close(enc(x), plain, rtol=0, atol=0)  # alpha None: the plain encoding
    enc.alpha = 4.0
    torch.testing.assert_close(enc(x), plain, rtol=0, atol=0)  # fully open
    enc.alpha = 1.5  # octave 0 at 1, octave 1 at 1/2, octaves 2, 3 closed
    out = enc(x)
    torch.testing.assert_close(out[:, :3], x, rtol=0, atol=0)
    sines, cosines = out[:, 3:15].reshape(5, 4, 3), out[:, 15:].reshape(5, 4, 3)
    for j, w in enumerate([1.0, 0.5, 0.0, 0.0]):
        torch.testing.assert_close(sines[:, j], w * torch.sin(2.0**j * x))
        torch.testing.assert_close(cosines[:, j], w * torch.cos(2.0**j * x))
    enc = WindowedPositionalEncoding(2, include_input=False, in_dim=2)
    enc.alpha = 0.0
    assert torch.equal(enc(torch.randn(3, 2)), torch.zeros(3, 8))


def test_latent_interpolation():
    times = torch.tensor([0.0, 0.5, 1.0])
    codes = torch.randn(3, 4)
    t = torch.tensor([[0.0], [0.5], [1.0], [0.25], [0.75], [-0.3], [1.4]])
    out = interpolate_latents(times, codes, t)
    for i in range(3):  # a training time returns that frame's code exactly
        assert torch.equal(out[i], codes[i])
    torch.testing.assert_close(out[3], (codes[0] + codes[1]) / 2)  # a midpoint: the mean of its neighbours
    torch.testing.assert_close(out[4], (codes[1] + codes[2]) / 2)
    assert torch.equal(out[5], codes[0]) and torch.equal(out[6], codes[2])  # outside: the nearest end
    t = torch.tensor([[0.1]])  # elsewhere: linear in t
    torch.testing.assert_close(interpolate_latents(times, codes, t)[0], 0.8 * codes[0] + 0.2 * codes[1])
    assert torch.equal(interpolate_latents(times[:1], codes[:1], t), codes[:1])  # one frame


def test_frame_latents_are_parameters_of_the_distinct_sorted_times():
    lat = FrameLatents(torch.tensor([0.5, 0.0, 1.0, 0.5, 0.0]), dim=8)
    assert torch.equal(lat.times, torch.tensor([0.0, 0.5, 1.0])) and lat.codes.shape == (3, 8)
    assert lat.codes.requires_grad and 0.0 <= lat.codes.min() and lat.codes.max() < 0.05  # GLO init
    assert set(lat.state_dict()) == {"times", "codes"}
    out = lat(torch.tensor([[0.5], [0.25]]))
    out.sum().backward()
    torch.testing.assert_close(lat.codes.grad[:, 0], torch.tensor([0.5, 1.5, 0.0]))


def test_appearance_codes_unseen_ids_take_code_zero():
    app = AppearanceCodes([7, 3, 3, 9], dim=2)
    assert torch.equal(app.ids, torch.tensor([3, 7, 9]))
    out = app(torch.tensor([[9], [3], [7], [5], [100], [-1]]), 6)
    codes = app.codes.detach()
    expected = torch.stack([codes[2], codes[0], codes[1], codes[0], codes[0], codes[0]])
    assert torch.equal(out.detach(), expected)
    assert torch.equal(app(None, 3).detach(), codes[:1].expand(3, 2))
