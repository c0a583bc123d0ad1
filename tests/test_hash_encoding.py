import math

import pytest
import torch

from nerflite.fields import hash_encoding
from nerflite.fields.hash_encoding import HashEncoding, level_resolutions


def reference_encoding(enc: HashEncoding, x: torch.Tensor) -> torch.Tensor:
    """The paper's definition, one point and one level at a time, with Python integers."""
    T = enc.table_size
    out = torch.zeros(x.shape[0], enc.n_levels, enc.n_features, dtype=enc.table.dtype)
    offset = 0
    for level, res in enumerate(enc.resolutions):
        dense = (res + 1) ** 3 <= T
        size = (res + 1) ** 3 if dense else T
        for p in range(x.shape[0]):
            pos = [min(max(float(v), 0.0), 1.0) * res for v in x[p]]
            cell = [min(int(math.floor(v)), res - 1) for v in pos]
            frac = [v - c for v, c in zip(pos, cell)]
            for dx in (0, 1):
                for dy in (0, 1):
                    for dz in (0, 1):
                        i, j, k = cell[0] + dx, cell[1] + dy, cell[2] + dz
                        if dense:
                            row = i + j * (res + 1) + k * (res + 1) ** 2
                        else:
                            row = ((i * 1) ^ (j * 2654435761) ^ (k * 805459861)) % 2**32 % T
                        w = (frac[0] if dx else 1 - frac[0]) * (frac[1] if dy else 1 - frac[1])
                        w *= frac[2] if dz else 1 - frac[2]
                        out[p, level] += w * enc.table[offset + row]
        offset += size
    return out.reshape(x.shape[0], -1)


def test_resolutions_follow_the_growth_factor():
    assert level_resolutions(16, 16, 2048)[0] == 16 and level_resolutions(16, 16, 2048)[-1] == 2048
    res = level_resolutions(4, 2, 16)
    assert res == [2, 4, 8, 16]  # b = 2
    assert level_resolutions(1, 8, 64) == [8]
    enc = HashEncoding(n_levels=4, n_features=3, log2_table_size=6, base_resolution=2, max_resolution=16)
    assert enc.out_dim == 12
    # levels 0 (27 entries) dense, the others hashed into 64 entries
    assert enc.table.shape == (27 + 64 * 3, 3)
    assert enc.table.abs().max() <= 1e-4


@pytest.mark.parametrize("log2_t,levels,base,top", [(6, 4, 2, 16), (12, 3, 3, 40), (19, 2, 16, 2048)])
def test_matches_the_per_point_per_level_reference(log2_t, levels, base, top):
    torch.manual_seed(0)
    enc = HashEncoding(levels, 2, log2_t, base, top).double()
    with torch.no_grad():
        enc.table.uniform_(-1, 1)
    x = torch.rand(40, 3, dtype=torch.float64)
    x[0] = torch.tensor([1.0, 1.0, 1.0])  # the far corner of the box
    x[1] = torch.tensor([0.0, 0.5, 1.0])
    x[2] = torch.tensor([-0.2, 1.3, 0.5])  # outside: clamped onto the box
    torch.testing.assert_close(enc(x), reference_encoding(enc, x), rtol=1e-10, atol=1e-10)


def test_interpolation_is_exact_on_vertices_and_continuous():
    torch.manual_seed(1)
    enc = HashEncoding(n_levels=1, n_features=2, log2_table_size=10, base_resolution=4, max_resolution=4).double()
    with torch.no_grad():
        enc.table.normal_()
    # vertex (1, 2, 3) of the 4^3 grid is row 1 + 2*5 + 3*25 of the dense table
    v = torch.tensor([[1 / 4, 2 / 4, 3 / 4]], dtype=torch.float64)
    torch.testing.assert_close(enc(v)[0], enc.table[1 + 2 * 5 + 3 * 25])
    # crossing a cell face changes the features continuously
    a, b = v + torch.tensor([[1e-9, 0, 0]]), v - torch.tensor([[1e-9, 0, 0]])
    assert (enc(a) - enc(b)).abs().max() < 1e-7


def test_level_mask_zeroes_fine_levels_and_their_gradients():
    enc = HashEncoding(n_levels=4, n_features=2, log2_table_size=8, base_resolution=2, max_resolution=16)
    with torch.no_grad():
        enc.table.uniform_(-1, 1)
    x = torch.rand(30, 3)
    full = enc(x)
    enc.n_active_levels = 2
    part = enc(x)
    torch.testing.assert_close(part[:, :4], full[:, :4])
    assert torch.all(part[:, 4:] == 0)
    part.sum().backward()
    # dense levels 0 (3^3 rows) and 1 (5^3 rows) get gradients, hashed levels 2, 3 none
    assert enc.table.shape[0] == 27 + 125 + 256 + 256
    assert torch.all(enc.table.grad[27 + 125 :] == 0)
    assert enc.table.grad[:27].abs().sum() > 0 and enc.table.grad[27 : 27 + 125].abs().sum() > 0


def test_gradcheck_wrt_table_and_points():
    torch.manual_seed(2)
    enc = HashEncoding(n_levels=3, n_features=2, log2_table_size=5, base_resolution=2, max_resolution=7).double()
    # points away from cell faces of every level (faces at multiples of 1/2, 1/3 or 1/4, 1/7 ...)
    x = torch.tensor([[0.11, 0.37, 0.62], [0.83, 0.09, 0.44], [0.55, 0.71, 0.19]], dtype=torch.float64)
    table = enc.table.detach().clone().uniform_(-1, 1).requires_grad_(True)

    def f(tab, pts):
        return torch.func.functional_call(enc, {"table": tab}, (pts,))

    assert torch.autograd.gradcheck(lambda t: f(t, x), (table,))
    assert torch.autograd.gradcheck(lambda p: f(table.detach(), p), (x.clone().requires_grad_(True),))


@pytest.mark.parametrize("active", [16, 5])
def test_fast_path_equals_the_autograd_path_in_features_and_table_gradient(active, monkeypatch):
    """Points without gradient take ``_GatherBlend`` (index_select + index_add_ backward); points
    with gradient take plain autograd. Both give the same features and table gradients."""
    torch.manual_seed(0)
    enc = HashEncoding(16, 2, 12, 4, 256).double()
    enc.n_active_levels = active
    with torch.no_grad():
        enc.table.uniform_(-1, 1)
    x = torch.rand(3000, 3, dtype=torch.float64)
    g = torch.randn(3000, enc.out_dim, dtype=torch.float64)
    calls = []
    apply = hash_encoding._GatherBlend.apply
    monkeypatch.setattr(hash_encoding._GatherBlend, "apply", lambda *a: calls.append(1) or apply(*a))
    fast = enc(x)  # x needs no gradient: the fast path
    (t_fast,) = torch.autograd.grad((fast * g).sum(), enc.table)
    xr = x.clone().requires_grad_(True)
    ref = enc(xr)  # the autograd path
    t_ref, _ = torch.autograd.grad((ref * g).sum(), [enc.table, xr])
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(t_fast, t_ref, rtol=1e-10, atol=1e-12)
    assert len(calls) == 1  # the fast path ran once (for ``fast``), the autograd path for ``ref``
