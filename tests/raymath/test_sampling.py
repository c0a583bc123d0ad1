import pytest
import torch

from nerflite.raymath.sampling import merge_samples, midpoints, sample_pdf, stratified_samples


def test_stratified_even_in_depth_and_in_disparity():
    near, far = torch.full((3, 1), 2.0), torch.full((3, 1), 6.0)
    t = stratified_samples(near, far, 5, perturb=False)
    torch.testing.assert_close(t, torch.tensor([[2.0, 3.0, 4.0, 5.0, 6.0]]).repeat(3, 1))
    t = stratified_samples(near, far, 5, perturb=False, lindisp=True)
    inv = 1 / t
    torch.testing.assert_close(inv[:, 1:] - inv[:, :-1], torch.full((3, 4), (1 / 6 - 1 / 2) / 4))


def test_stratified_perturbed_stays_in_strata():
    g = torch.Generator().manual_seed(0)
    near, far = torch.rand(500, 1, generator=g) + 1, torch.rand(500, 1, generator=g) + 3
    base = stratified_samples(near, far, 8, perturb=False)
    t = stratified_samples(near, far, 8, perturb=True, generator=g)
    edges = torch.cat([near, midpoints(base), far], dim=-1)  # [n, 9] strata boundaries
    assert torch.all(t >= edges[:, :-1]) and torch.all(t <= edges[:, 1:])
    assert torch.all(t[:, 1:] >= t[:, :-1])
    # uniform inside each stratum: mean relative position 0.5
    rel = (t - edges[:, :-1]) / (edges[:, 1:] - edges[:, :-1])
    assert abs(rel.mean().item() - 0.5) < 0.02
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = stratified_samples(near, far, 8, perturb=True, generator=g1)
    torch.testing.assert_close(a, stratified_samples(near, far, 8, perturb=True, generator=g2))


def _pdf_case():
    bins = torch.tensor([0.0, 0.1, 0.3, 0.35, 0.6, 1.0])  # uneven bins
    weights = torch.tensor([1.0, 0.0, 4.0, 2.0, 3.0])
    return bins, weights


def test_sample_pdf_follows_the_pdf():
    bins, weights = _pdf_case()
    g = torch.Generator().manual_seed(0)
    n_rays, k = 200, 100
    t = sample_pdf(bins.repeat(n_rays, 1), weights.repeat(n_rays, 1), k, deterministic=False, generator=g)
    x = t.flatten()
    total = x.numel()
    p = (weights + 1e-5) / (weights + 1e-5).sum()
    # chi-square over the bins: 4 degrees of freedom (the empty bin is merged with the first);
    # 18.47 is the 0.999 quantile of chi2(4)
    counts = torch.bucketize(x, bins[1:-1], right=True).bincount(minlength=5).double()  # per bin
    assert counts[1] <= 5  # weight 0 bin gets only the 1e-5 floor
    observed = torch.cat([counts[:1] + counts[1:2], counts[2:]])
    expected = total * torch.cat([p[:1] + p[1:2], p[2:]]).double()
    chi2 = ((observed - expected) ** 2 / expected).sum().item()
    assert chi2 < 18.47, chi2
    # Kolmogorov-Smirnov against the piecewise-linear CDF (uniform inside bins); 1.95/sqrt(N) is
    # the 0.001 critical value
    xs = torch.sort(x).values.double()
    cdf_edges = torch.cat([torch.zeros(1), torch.cumsum(p, 0)]).double()
    i = torch.bucketize(xs, bins.double()[1:-1], right=True)
    b = bins.double()
    F = cdf_edges[i] + (xs - b[i]) / (b[i + 1] - b[i]) * (cdf_edges[i + 1] - cdf_edges[i])
    emp_hi = torch.arange(1, total + 1, dtype=torch.float64) / total
    ks = torch.maximum((emp_hi - F).abs(), (emp_hi - 1 / total - F).abs()).max().item()
    assert ks < 1.95 / total**0.5, ks


@pytest.mark.parametrize("deterministic", [True, False])
def test_sample_pdf_sorted_and_inside_random_bins(deterministic):
    g = torch.Generator().manual_seed(1)
    n, s = 64, 31
    bins = torch.sort(torch.rand(n, s + 1, generator=g) * 4 + 2, dim=-1).values
    weights = torch.rand(n, s, generator=g) ** 4
    weights[:3] = 0.0  # empty rays still sample (uniformly)
    t = sample_pdf(bins, weights, 50, deterministic=deterministic, generator=g)
    assert t.shape == (n, 50)
    assert torch.all(t[:, 1:] >= t[:, :-1])
    assert torch.all(t >= bins[:, :1]) and torch.all(t <= bins[:, -1:])


def test_sample_pdf_eval_is_deterministic_quantiles():
    bins, weights = _pdf_case()
    a = sample_pdf(bins[None], weights[None], 9, deterministic=True)
    b = sample_pdf(
        bins[None], weights[None], 9, deterministic=True, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(a, b)
    # u = 0.5 lies in bin 2 (CDF 0.1 -> 0.5 over [0.3, 0.35]) at its very end: t = 0.35
    torch.testing.assert_close(a[0, 4], torch.tensor(0.35), atol=1e-4, rtol=0)
    assert a[0, 0] == 0.0 and abs(a[0, -1].item() - 1.0) < 1e-6


def test_merge_samples_sorted_with_indices():
    a = torch.tensor([[1.0, 3.0, 5.0]])
    b = torch.tensor([[2.0, 4.0]])
    t, order = merge_samples(a, b, return_indices=True)
    torch.testing.assert_close(t, torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]]))
    torch.testing.assert_close(torch.cat([a, b], -1).gather(-1, order), t)
    torch.testing.assert_close(merge_samples(a, b), t)
