import math

import torch

from nerflite.fields.batching import chunked_apply
from nerflite.fields.encodings import PositionalEncoding
from nerflite.fields.nerf_field import NeRFField


def test_positional_encoding_width_and_values():
    pe = PositionalEncoding(3, include_input=True, in_dim=2)
    assert pe.out_dim == 2 * (1 + 6)
    x = torch.tensor([[math.pi / 4, 0.0]])
    out = pe(x)
    assert out.shape == (1, pe.out_dim)
    # input, then sin at 1, 2, 4 (coordinate-minor), then cos in the same order
    s2 = math.sqrt(0.5)
    expected = [math.pi / 4, 0.0, s2, 0.0, 1.0, 0.0, 0.0, 0.0, s2, 1.0, 0.0, 1.0, -1.0, 1.0]
    torch.testing.assert_close(out[0], torch.tensor(expected), atol=1e-6, rtol=0)
    assert PositionalEncoding(10).out_dim == 63 and PositionalEncoding(4).out_dim == 27
    assert PositionalEncoding(6, include_input=False, in_dim=4).out_dim == 48
    assert PositionalEncoding(0, in_dim=3)(torch.ones(5, 3)).shape == (5, 3)


def test_nerf_field_shapes_and_paper_parameter_count():
    field = NeRFField()
    # the paper's 8x256 network with the skip at layer 4 and the view branch: 595,844 parameters
    assert sum(p.numel() for p in field.parameters()) == 595_844
    assert field.trunk[5].in_features == 256 + 63
    pts, dirs = torch.randn(11, 3), torch.nn.functional.normalize(torch.randn(11, 3), dim=-1)
    sigma, rgb = field(pts, dirs)
    assert sigma.shape == (11, 1) and rgb.shape == (11, 3)
    assert torch.all((rgb > 0) & (rgb < 1))


def test_nerf_field_in_dim_4_and_without_viewdirs():
    field = NeRFField(depth=4, width=32, skips=[2], pos_freqs=4, in_dim=4)
    sigma, rgb = field(torch.randn(6, 4), torch.randn(6, 3))
    assert sigma.shape == (6, 1) and rgb.shape == (6, 3)
    field = NeRFField(depth=3, width=16, skips=[2], use_viewdirs=False)
    sigma, rgb = field(torch.randn(6, 3))
    assert sigma.shape == (6, 1) and rgb.shape == (6, 3)
    # the view direction changes colour only with use_viewdirs
    field = NeRFField(depth=2, width=16, skips=[], use_viewdirs=False)
    p = torch.randn(4, 3)
    torch.testing.assert_close(field(p, torch.randn(4, 3))[1], field(p, torch.randn(4, 3))[1])


def test_chunked_apply_matches_single_call_with_gradients():
    torch.manual_seed(0)
    field = NeRFField(depth=3, width=32, skips=[1], pos_freqs=3, dir_freqs=2)
    pts, dirs = torch.randn(103, 3), torch.randn(103, 3)
    ref_sigma, ref_rgb = field(pts, dirs)
    ref_grad = torch.autograd.grad(ref_sigma.sum() + ref_rgb.sum(), field.trunk[0].weight)[0]
    for netchunk in (1, 7, 50, 103, 1000, None):
        sigma, rgb = chunked_apply(field, pts, dirs, netchunk=netchunk)
        torch.testing.assert_close(sigma, ref_sigma)
        torch.testing.assert_close(rgb, ref_rgb)
        grad = torch.autograd.grad(sigma.sum() + rgb.sum(), field.trunk[0].weight)[0]
        torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-5)
    # a single-tensor function works too
    torch.testing.assert_close(chunked_apply(lambda x: 2 * x, pts, netchunk=10), 2 * pts)
