"""The SE(3) exponential map of HyperNeRF's / Nerfies' deformation against closed forms.

References are written out from the textbook (Lynch & Park, Modern Robotics): a rotation by
theta about z is [[c, -s, 0], [s, c, 0], [0, 0, 1]]; eq. 3.88 with a unit axis omega, theta and
v / theta is evaluated term by term in float64, sharing no code with ``nerflite.rigid_body``.
"""

from __future__ import annotations

import math

import pytest
import torch

from nerflite.rigid_body import SMALL, exp_se3, exp_so3, se3_transform, skew

D = torch.float64
THETAS = [1e-7, 1e-3, 0.2, SMALL - 1e-9, SMALL, 0.9, math.pi / 2, 3.0]  # both sides of the Taylor switch


def rot_z(theta: float) -> torch.Tensor:
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=D)


def ref_exp_se3(r: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Modern Robotics eq. 3.51 and 3.88 for one screw, as the official SE3Field feeds them:
    theta = |r|, omega = r / theta, the screw's v = v / theta."""
    theta = float(r.norm())
    w = (r / theta).tolist()
    wx = torch.tensor([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]], dtype=D)
    eye = torch.eye(3, dtype=D)
    rot = eye + math.sin(theta) * wx + (1 - math.cos(theta)) * wx @ wx
    g = theta * eye + (1 - math.cos(theta)) * wx + (theta - math.sin(theta)) * wx @ wx
    return rot, g @ (v / theta)


def test_skew_is_the_cross_product():
    a, b = torch.randn(5, 3, dtype=D), torch.randn(5, 3, dtype=D)
    torch.testing.assert_close((skew(a) @ b[..., None])[..., 0], torch.linalg.cross(a, b), rtol=0, atol=1e-12)


@pytest.mark.parametrize("theta", THETAS)
def test_rotation_about_z_by_theta(theta):
    r = torch.tensor([0.0, 0.0, theta], dtype=D)
    torch.testing.assert_close(exp_so3(r), rot_z(theta), rtol=0, atol=1e-12)
    rot, p = exp_se3(r, torch.zeros(3, dtype=D))  # no translation part: a pure rotation about the origin
    torch.testing.assert_close(rot, rot_z(theta), rtol=0, atol=1e-12)
    torch.testing.assert_close(p, torch.zeros(3, dtype=D), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_screw_is_exactly_the_identity_with_finite_gradients(dtype):
    r = torch.zeros(4, 3, dtype=dtype, requires_grad=True)
    v = torch.zeros(4, 3, dtype=dtype, requires_grad=True)
    x = torch.randn(4, 3, dtype=dtype)
    rot, p = exp_se3(r, v)
    assert torch.equal(rot, torch.eye(3, dtype=dtype).expand(4, 3, 3)) and torch.equal(p, torch.zeros_like(p))
    y = se3_transform(r, v, x)
    assert torch.equal(y, x)
    gr, gv = torch.autograd.grad(y.sum(), (r, v))
    assert torch.isfinite(gr).all() and torch.isfinite(gv).all()
    # d(R x)/dr at r = 0 is -[x]: the gradient of sum(R x + p) wrt r is sum over rows of x x e
    torch.testing.assert_close(gr, torch.linalg.cross(x, torch.ones_like(x)), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(gv, torch.ones_like(v))


def test_pure_translation():
    """r = 0: eq. 3.88's |omega| = 0 case, the translation v itself."""
    v = torch.tensor([[0.3, -1.2, 2.0]], dtype=D)
    rot, p = exp_se3(torch.zeros(1, 3, dtype=D), v)
    torch.testing.assert_close(rot[0], torch.eye(3, dtype=D), rtol=0, atol=0)
    torch.testing.assert_close(p, v, rtol=0, atol=0)
    x = torch.randn(6, 3, dtype=D)
    torch.testing.assert_close(se3_transform(torch.zeros(6, 3, dtype=D), v.expand(6, 3), x), x + v)


@pytest.mark.parametrize("theta", [1e-4, 0.3, 1.0, 2.5])
def test_rotation_about_an_axis_through_a_point(theta):
    """The screw (omega theta, -omega x q theta) rotates about the axis omega through q: x' = R (x - q) + q."""
    q = torch.tensor([0.5, -0.2, 1.0], dtype=D)
    omega = torch.tensor([0.0, 0.0, 1.0], dtype=D)
    r, v = omega * theta, -torch.linalg.cross(omega, q) * theta
    x = torch.randn(7, 3, dtype=D)
    expected = (x - q) @ rot_z(theta).T + q
    torch.testing.assert_close(se3_transform(r.expand(7, 3), v.expand(7, 3), x), expected, rtol=0, atol=1e-12)


def test_screw_with_pitch_rotates_and_advances_along_the_axis():
    """v = h omega (pitch h): a rotation by theta about z through the origin and h theta along z."""
    theta, h = 1.3, 0.4
    omega = torch.tensor([0.0, 0.0, 1.0], dtype=D)
    rot, p = exp_se3(omega * theta, h * omega * theta)
    torch.testing.assert_close(rot, rot_z(theta), rtol=0, atol=1e-12)
    torch.testing.assert_close(p, torch.tensor([0.0, 0.0, h * theta], dtype=D), rtol=0, atol=1e-12)


def test_composition_along_one_screw_adds_the_angles():
    """exp(S t1) exp(S t2) = exp(S (t1 + t2)) for one screw axis S."""
    g = torch.Generator().manual_seed(0)
    axis = torch.nn.functional.normalize(torch.randn(3, generator=g, dtype=D), dim=0)
    v_unit = torch.randn(3, generator=g, dtype=D)
    t1, t2 = 0.4, 1.1

    def hom(t):
        rot, p = exp_se3(axis * t, v_unit * t)
        out = torch.eye(4, dtype=D)
        out[:3, :3], out[:3, 3] = rot, p
        return out

    torch.testing.assert_close(hom(t1) @ hom(t2), hom(t1 + t2), rtol=0, atol=1e-12)


def test_matches_modern_robotics_eq_3_88_for_random_screws():
    g = torch.Generator().manual_seed(1)
    r = torch.randn(64, 3, generator=g, dtype=D) * torch.logspace(-4, 0.5, 64, dtype=D)[:, None]
    v = torch.randn(64, 3, generator=g, dtype=D)
    rot, p = exp_se3(r, v)
    for i in range(64):
        ref_rot, ref_p = ref_exp_se3(r[i], v[i])
        torch.testing.assert_close(rot[i], ref_rot, rtol=0, atol=1e-9)
        torch.testing.assert_close(p[i], ref_p, rtol=0, atol=1e-9)
    # proper rotations
    eye = torch.eye(3, dtype=D).expand(64, 3, 3)
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), eye, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(64, dtype=D), rtol=0, atol=1e-12)


def test_float32_is_accurate_across_the_taylor_switch():
    theta = torch.linspace(0.0, 2.0, 401, dtype=D)
    r = torch.stack([0.6 * theta, -0.8 * theta, 0 * theta], -1)
    v = torch.tensor([0.5, 1.0, -2.0], dtype=D).expand(401, 3)
    rot64, p64 = exp_se3(r, v)
    rot32, p32 = exp_se3(r.float(), v.float())
    assert (rot32.double() - rot64).abs().max() < 1e-6 and (p32.double() - p64).abs().max() < 1e-6
