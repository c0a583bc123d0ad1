"""nerflite's pure functions against the papers' equations, written out here sample by sample.

Every reference below is a plain loop over rays and samples in float64, transcribed from the
equation it names (NeRF: Mildenhall et al. 2020, eq. 2, 3, 5; NeuS: Wang et al. 2021, eq. 13 and
its section 3.4 / official code for the annealed cosine, the up-sampling and the background
samples), so it shares no code with the vectorised functions it checks. Both sides see the same
tiny synthetic rays and the same random draws (fixed seeds).

``CASES`` maps a name to a function returning ``(nerflite, reference, atol)``; the tests assert
each pair is close, and ``bench/parity.py`` prints the same comparisons as a table.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from nerflite.raymath.neus_rendering import alpha_from_sdf, background_depths, hierarchical_upsample
from nerflite.raymath.rendering import alpha_from_density, composite, deltas, weights_from_alpha, weights_from_density
from nerflite.raymath.sampling import sample_pdf, stratified_samples

N_RAYS, N_SAMPLES = 6, 12
DTYPE = torch.float64


def _rays(seed: int = 0) -> tuple[Tensor, Tensor]:
    """Near [n, 1] in [1, 2) and far [n, 1] in [4, 6)."""
    g = torch.Generator().manual_seed(seed)
    near = 1.0 + torch.rand(N_RAYS, 1, generator=g, dtype=DTYPE)
    return near, 4.0 + 2.0 * torch.rand(N_RAYS, 1, generator=g, dtype=DTYPE)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


# ------------------------------------------------------------------------------------ NeRF


def ref_stratified(near: Tensor, far: Tensor, n: int, draws: Tensor | None, lindisp: bool = False) -> Tensor:
    """Stratified sampling as the NeRF code does it: ``n`` evenly spaced depths (in depth, or in
    disparity with ``lindisp``) including both ends; with draws r_i in [0, 1), sample i is drawn
    uniformly between the midpoints to its neighbours (the first and last strata end at near /
    far). Eq. 2 of the paper uses n equal bins instead; the official code, and nerflite, use this."""
    out = torch.empty(near.shape[0], n, dtype=DTYPE)
    for r in range(near.shape[0]):
        a, b = float(near[r]), float(far[r])
        grid = []
        for i in range(n):
            x = i / (n - 1)
            grid.append(1.0 / ((1 - x) / a + x / b) if lindisp else a + (b - a) * x)
        for i in range(n):
            if draws is None:
                out[r, i] = grid[i]
                continue
            lo = grid[i] if i == 0 else 0.5 * (grid[i - 1] + grid[i])
            hi = grid[i] if i == n - 1 else 0.5 * (grid[i] + grid[i + 1])
            out[r, i] = lo + (hi - lo) * float(draws[r, i])
    return out


def case_stratified(perturb: bool, lindisp: bool):
    near, far = _rays()
    ours = stratified_samples(near, far, N_SAMPLES, perturb=perturb, lindisp=lindisp,
                              generator=torch.Generator().manual_seed(1))
    draws = torch.rand(N_RAYS, N_SAMPLES, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    return ours, ref_stratified(near, far, N_SAMPLES, draws if perturb else None, lindisp), 1e-12


def ref_inverse_cdf(bins: Tensor, weights: Tensor, u: Tensor) -> Tensor:
    """NeRF eq. 5: the normalised weights w_i / sum_j w_j (each w_i + 1e-5, as the code adds, so an
    empty ray samples uniformly) are a piecewise-constant pdf over the bins; depth t = F^-1(u) for
    the piecewise-linear CDF F, found bin by bin."""
    n, k = u.shape
    out = torch.empty(n, k, dtype=DTYPE)
    for r in range(n):
        w = [float(x) + 1e-5 for x in weights[r]]
        total = sum(w)
        cdf = [0.0]
        for x in w:
            cdf.append(cdf[-1] + x / total)
        cdf[-1] = 1.0
        for j in range(k):
            q = float(u[r, j])
            i = 0
            while i < len(w) - 1 and cdf[i + 1] <= q:  # the bin with cdf[i] <= q < cdf[i + 1]
                i += 1
            frac = (q - cdf[i]) / (cdf[i + 1] - cdf[i])
            out[r, j] = float(bins[r, i]) + min(max(frac, 0.0), 1.0) * float(bins[r, i + 1] - bins[r, i])
    return out


def _pdf_inputs():
    g = torch.Generator().manual_seed(2)
    near, far = _rays()
    bins = stratified_samples(near, far, N_SAMPLES + 1, perturb=True, generator=g)  # [n, s+1] sorted edges
    weights = 0.05 + torch.rand(N_RAYS, N_SAMPLES, generator=g, dtype=DTYPE)
    weights[0] = 0.0  # an empty ray
    weights[1, 3:] = 0.0  # mass only in the first bins
    return bins, weights


def case_sample_pdf_deterministic():
    bins, weights = _pdf_inputs()
    ours = sample_pdf(bins, weights, 16, deterministic=True)
    u = torch.linspace(0.0, 1.0, 16, dtype=DTYPE).expand(N_RAYS, 16)
    return ours, ref_inverse_cdf(bins, weights, u), 1e-9


def case_sample_pdf_fixed_draws():
    bins, weights = _pdf_inputs()
    u = torch.sort(torch.rand(N_RAYS, 16, generator=torch.Generator().manual_seed(3), dtype=DTYPE), -1).values
    ours = sample_pdf(bins, weights, 16, deterministic=False, u=u)
    return ours, ref_inverse_cdf(bins, weights, u), 1e-9


def case_sample_pdf_random_draws():
    """With a generator, sample_pdf inverts the sorted U[0, 1) draws of that generator."""
    bins, weights = _pdf_inputs()
    ours = sample_pdf(bins, weights, 16, deterministic=False, generator=torch.Generator().manual_seed(4))
    u = torch.sort(torch.rand(N_RAYS, 16, generator=torch.Generator().manual_seed(4), dtype=DTYPE), -1).values
    return ours, ref_inverse_cdf(bins, weights, u), 1e-9


def _density_inputs():
    g = torch.Generator().manual_seed(5)
    near, far = _rays()
    t = stratified_samples(near, far, N_SAMPLES, perturb=True, generator=g)  # [n, s]
    sigma = torch.relu(3.0 * torch.randn(N_RAYS, N_SAMPLES, generator=g, dtype=DTYPE))  # [n, s]
    rgb = torch.rand(N_RAYS, N_SAMPLES, 3, generator=g, dtype=DTYPE)
    return t, sigma, rgb


def ref_render(t: Tensor, sigma: Tensor, rgb: Tensor) -> tuple[Tensor, Tensor]:
    """NeRF eq. 3: C = sum_i T_i (1 - exp(-sigma_i delta_i)) c_i with T_i = exp(-sum_{j<i} sigma_j
    delta_j), delta_i = t_{i+1} - t_i and the last interval 1e10 (as the code). -> (weights, C)."""
    n, s = t.shape
    w = torch.zeros(n, s, dtype=DTYPE)
    color = torch.zeros(n, 3, dtype=DTYPE)
    for r in range(n):
        optical_depth = 0.0
        for i in range(s):
            delta = float(t[r, i + 1] - t[r, i]) if i + 1 < s else 1e10
            w[r, i] = math.exp(-optical_depth) * (1.0 - math.exp(-float(sigma[r, i]) * delta))
            optical_depth += float(sigma[r, i]) * delta
            color[r] += w[r, i] * rgb[r, i]
    return w, color


def case_weights_from_density():
    t, sigma, rgb = _density_inputs()
    ours, _ = weights_from_density(sigma, deltas(t))
    return ours, ref_render(t, sigma, rgb)[0], 1e-12


def case_weights_from_alpha():
    """The alpha path keeps 1e-10 in each transmittance factor (finite gradients behind opaque
    samples): within 1e-9 of eq. 3."""
    t, sigma, rgb = _density_inputs()
    ours, _ = weights_from_alpha(alpha_from_density(sigma, deltas(t)))
    return ours, ref_render(t, sigma, rgb)[0], 1e-9


def case_composite_rgb():
    t, sigma, rgb = _density_inputs()
    ours = composite(weights_from_density(sigma, deltas(t))[0], rgb)
    return ours, ref_render(t, sigma, rgb)[1], 1e-12


# ------------------------------------------------------------------------------------ NeuS

# nerflite's opacity is (Phi_prev - Phi_next + 1e-5) / (Phi_prev + 1e-5), as the official code,
# so that it stays finite where Phi_prev ~ 0 (deep inside, where eq. 13 is 0 / 0). It differs from
# eq. 13 by at most 1e-5 / Phi_prev: compared where Phi_prev > 0.05, within 2e-4.
STABLE_CDF, STABLE_ATOL = 0.05, 2e-4


def ref_neus_alpha(sdf_prev: float, sdf_next: float, inv_s: float) -> float:
    """NeuS eq. 13: alpha_i = max((Phi_s(f(p(t_i))) - Phi_s(f(p(t_{i+1})))) / Phi_s(f(p(t_i))), 0)."""
    prev, nxt = _sigmoid(inv_s * sdf_prev), _sigmoid(inv_s * sdf_next)
    return min(max((prev - nxt) / prev, 0.0), 1.0)


def _plane_sections(seed: int = 6):
    """Sections along rays through the plane f(x) = <x, normal> - 0.3: the SDF is linear along a
    ray, f(t) = f(0) + cos * t, so its values at the section ends are exact."""
    g = torch.Generator().manual_seed(seed)
    t = torch.sort(torch.rand(N_RAYS, N_SAMPLES + 1, generator=g, dtype=DTYPE) * 2.0, -1).values  # [n, s+1]
    f0 = 0.2 + 0.6 * torch.rand(N_RAYS, 1, generator=g, dtype=DTYPE)  # start in front of the surface
    cos = -torch.rand(N_RAYS, 1, generator=g, dtype=DTYPE)  # entering: the SDF decreases
    cos[0] = 0.4  # one ray leaving the surface
    return t, f0, cos


def case_neus_alpha_exact_ends():
    """cos_anneal_ratio 1 on a plane: the midpoint estimate f(mid) -/+ cos * delta / 2 is the
    exact SDF at the section ends, so nerflite's opacity is eq. 13 itself (1e-5 terms aside)."""
    t, f0, cos = _plane_sections()
    inv_s = 20.0
    delta = t[:, 1:] - t[:, :-1]  # [n, s]
    mid = 0.5 * (t[:, 1:] + t[:, :-1])
    ours = alpha_from_sdf(f0 + cos * mid, cos.expand_as(mid), delta, inv_s, 1.0)
    ref = torch.empty_like(ours)
    for r in range(N_RAYS):
        for i in range(N_SAMPLES):
            f = lambda x, r=r: float(f0[r] + cos[r] * x)  # noqa: E731
            ref[r, i] = ref_neus_alpha(f(t[r, i]), f(t[r, i + 1]), inv_s)
    keep = torch.sigmoid(inv_s * (f0 + cos * t[:, :-1])) > STABLE_CDF
    return ours[keep], ref[keep], STABLE_ATOL


def ref_annealed_alpha(sdf_mid: float, cos: float, delta: float, inv_s: float, ratio: float) -> float:
    """NeuS's annealed cosine (section 3.4 "cos annealing", official code): early in training the
    true rate of change ``cos`` is blended with -relu(-cos / 2 + 1/2), which is negative also for
    back-facing sections; the section ends are estimated as f(mid) -/+ that * delta / 2; then eq. 13."""
    blended = -(max(-0.5 * cos + 0.5, 0.0) * (1.0 - ratio) + max(-cos, 0.0) * ratio)
    return ref_neus_alpha(sdf_mid - 0.5 * blended * delta, sdf_mid + 0.5 * blended * delta, inv_s)


def case_neus_alpha_annealed(ratio: float):
    g = torch.Generator().manual_seed(7)
    sdf = 0.3 * torch.randn(N_RAYS, N_SAMPLES, generator=g, dtype=DTYPE)
    cos = 2.0 * torch.rand(N_RAYS, N_SAMPLES, generator=g, dtype=DTYPE) - 1.0
    delta = 0.05 + 0.1 * torch.rand(N_RAYS, N_SAMPLES, generator=g, dtype=DTYPE)
    inv_s = 30.0
    ours = alpha_from_sdf(sdf, cos, delta, inv_s, ratio)
    ref = torch.empty_like(ours)
    for r in range(N_RAYS):
        for i in range(N_SAMPLES):
            ref[r, i] = ref_annealed_alpha(float(sdf[r, i]), float(cos[r, i]), float(delta[r, i]), inv_s, ratio)
    blended = -(torch.relu(-0.5 * cos + 0.5) * (1.0 - ratio) + torch.relu(-cos) * ratio)
    keep = torch.sigmoid(inv_s * (sdf - 0.5 * blended * delta)) > STABLE_CDF
    return ours[keep], ref[keep], STABLE_ATOL


def sphere_sdf(x: Tensor) -> Tensor:
    return x.norm(dim=-1) - 0.5


def ref_upsample(o: Tensor, d: Tensor, t: Tensor, n_importance: int, steps: int) -> Tensor:
    """NeuS's hierarchical up-sampling (section 3.4, official code), ray by ray: in round i, with
    the fixed sharpness inv_s = 64 * 2^i, each section's opacity comes from eq. 13 with the SDF at
    its ends estimated from the midpoint value and the finite-difference slope (the smaller of
    this section's and the previous one's, clipped to [-1000, 0], zero for sections with both
    ends outside the unit sphere); weights T_i alpha_i (T with 1e-7 per factor, as the code); the
    new depths invert their CDF at the quantiles (j + 0.5) / k; then they join the samples."""
    k = n_importance // steps
    out = []
    for r in range(t.shape[0]):
        ts = [float(x) for x in t[r]]
        point = lambda s, r=r: o[r] + s * d[r]  # noqa: E731
        fs = [float(sphere_sdf(point(s))) for s in ts]
        for i in range(steps):
            inv_s = 64.0 * 2**i
            alphas, prev_slope = [], 0.0
            for j in range(len(ts) - 1):
                length = ts[j + 1] - ts[j]
                slope = (fs[j + 1] - fs[j]) / (length + 1e-5)
                use = min(max(min(prev_slope, slope), -1e3), 0.0)
                prev_slope = slope
                inside = float(point(ts[j]).norm()) < 1.0 or float(point(ts[j + 1]).norm()) < 1.0
                use = use if inside else 0.0
                mid = 0.5 * (fs[j] + fs[j + 1])
                a, b = _sigmoid(inv_s * (mid - 0.5 * use * length)), _sigmoid(inv_s * (mid + 0.5 * use * length))
                alphas.append((a - b + 1e-5) / (a + 1e-5))
            weights, trans = [], 1.0
            for a in alphas:
                weights.append(trans * a)
                trans *= 1.0 - a + 1e-7
            bins = torch.tensor(ts, dtype=DTYPE)[None]
            u = ((torch.arange(k, dtype=DTYPE) + 0.5) / k)[None]
            new = [float(x) for x in ref_inverse_cdf(bins, torch.tensor([weights], dtype=DTYPE), u)[0]]
            ts = sorted(ts + new)
            fs = [float(sphere_sdf(point(s))) for s in ts]
        out.append(ts)
    return torch.tensor(out, dtype=DTYPE)


def _sphere_rays():
    g = torch.Generator().manual_seed(8)
    o = torch.nn.functional.normalize(torch.randn(N_RAYS, 3, generator=g, dtype=DTYPE), dim=-1) * 2.5
    target = 0.3 * torch.randn(N_RAYS, 3, generator=g, dtype=DTYPE)
    target[0] = torch.tensor([0.0, 0.0, 3.0], dtype=DTYPE)  # one ray misses the sphere
    d = torch.nn.functional.normalize(target - o, dim=-1)
    return o, d


def case_neus_upsample():
    o, d = _sphere_rays()
    mid = -(o * d).sum(-1, keepdim=True)
    near, far = (mid - 1.0).clamp_min(0.0), mid + 1.0
    t = stratified_samples(near, far, 16, perturb=False)
    ours = hierarchical_upsample(o, d, t, sphere_sdf, n_importance=16, steps=4)
    return ours, ref_upsample(o, d, t, 16, 4), 1e-6


def case_neus_background_depths():
    """NeuS's samples beyond the sphere (official code): u_j = linspace(1e-3, 1 - 1/(m + 1), m),
    jittered inside the strata between their midpoints, depths far / u (farthest first, so
    flipped) plus 1 / n_samples, half the nominal section length inside."""
    m, n_samples = 8, 64
    near, far = _rays()
    ours = background_depths(far, m, perturb=True, generator=torch.Generator().manual_seed(9),
                             offset=1.0 / n_samples)
    draws = torch.rand(N_RAYS, m, generator=torch.Generator().manual_seed(9), dtype=DTYPE)
    ref = torch.empty(N_RAYS, m, dtype=DTYPE)
    grid = [1e-3 + (1.0 - 1.0 / (m + 1) - 1e-3) * j / (m - 1) for j in range(m)]
    for r in range(N_RAYS):
        u = []
        for j in range(m):
            lo = grid[j] if j == 0 else 0.5 * (grid[j - 1] + grid[j])
            hi = grid[j] if j == m - 1 else 0.5 * (grid[j] + grid[j + 1])
            u.append(lo + (hi - lo) * float(draws[r, j]))
        ref[r] = torch.tensor([float(far[r]) / x + 1.0 / n_samples for x in reversed(u)], dtype=DTYPE)
    return ours, ref, 1e-9


CASES = {
    "stratified": lambda: case_stratified(False, False),
    "stratified_perturbed": lambda: case_stratified(True, False),
    "stratified_lindisp_perturbed": lambda: case_stratified(True, True),
    "sample_pdf_deterministic": case_sample_pdf_deterministic,
    "sample_pdf_fixed_draws": case_sample_pdf_fixed_draws,
    "sample_pdf_generator": case_sample_pdf_random_draws,
    "weights_from_density_eq3": case_weights_from_density,
    "weights_from_alpha_eq3": case_weights_from_alpha,
    "composite_rgb_eq3": case_composite_rgb,
    "neus_alpha_eq13_plane": case_neus_alpha_exact_ends,
    "neus_alpha_anneal_0": lambda: case_neus_alpha_annealed(0.0),
    "neus_alpha_anneal_0.4": lambda: case_neus_alpha_annealed(0.4),
    "neus_alpha_anneal_1": lambda: case_neus_alpha_annealed(1.0),
    "neus_upsample": case_neus_upsample,
    "neus_background_depths": case_neus_background_depths,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_the_papers_equations(name):
    ours, ref, atol = CASES[name]()
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours.to(DTYPE), ref, atol=atol, rtol=0)


def test_the_references_see_what_they_should():
    """The comparisons are not vacuous: the up-sampled depths crowd the surface, the plane's
    entering sections are opaque, the empty pdf ray samples uniformly."""
    o, d = _sphere_rays()
    t, _, _ = case_neus_upsample()
    hit = (torch.linalg.cross(o, d, dim=-1).norm(dim=-1) < 0.5)  # rays passing within 0.5 of the centre
    near_surface = (sphere_sdf(o[:, None] + t[..., None] * d[:, None]).abs() < 0.02).sum(-1)
    assert hit.sum() >= 3 and (near_surface[hit] >= 8).all()
    alpha, _, _ = case_neus_alpha_exact_ends()
    assert alpha[1:].max() > 0.3 and alpha[0].max() < 1e-3  # the leaving ray stays transparent
    bins, _ = _pdf_inputs()
    t_empty, _, _ = case_sample_pdf_deterministic()
    edges = np.linspace(0.0, 1.0, N_SAMPLES + 1)  # an empty ray: every bin holds mass 1 / s
    uniform = np.interp(np.linspace(0.0, 1.0, 16), edges, bins[0].numpy())
    np.testing.assert_allclose(t_empty[0].numpy(), uniform, atol=1e-3)


def test_bench_parity_prints_a_table_then_its_json():
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "parity.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == len(CASES) + 2  # header, one row per comparison, the JSON
    result = json.loads(lines[-1])
    assert set(result["cases"]) == set(CASES) and result["all_within_tolerance"] and not result["failed"]
