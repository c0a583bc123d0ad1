"""Exponential maps of so(3) and se(3), batched, as pure functions (Lynch & Park, Modern Robotics).

A rigid motion is given by a rotation vector ``r`` [..., 3] and a translation vector ``v`` [..., 3],
the unnormalised screw (r, v) = theta * (omega, v / theta) with theta = |r| and omega = r / theta
(google/nerfies' and google/hypernerf's ``SE3Field``: the MLP outputs r and v, then divides both by
theta). Then, with [w] the skew (cross-product) matrix of w (eq. 3.30):

    R = exp([omega] theta) = I + sin(theta) [omega] + (1 - cos(theta)) [omega]^2          (eq. 3.51)
    p = (I theta + (1 - cos(theta)) [omega] + (theta - sin(theta)) [omega]^2) v / theta    (eq. 3.88)

and x' = R x + p. Written with r instead of omega the coefficients become A = sin(t)/t,
B = (1 - cos(t))/t^2, C = (t - sin(t))/t^3, finite at t = 0 (A = 1, B = 1/2, C = 1/6):

    R = I + A [r] + B [r]^2,      p = (I + B [r] + C [r]^2) v

so a zero screw is exactly the identity and r = 0 is the pure translation p = v (eq. 3.88's
|omega| = 0 case). Below ``SMALL`` radians A, B, C come from their Taylor series (the closed forms
cancel catastrophically there, C worst), above it from the closed forms; both sides are accurate
to the precision of the dtype (float32 or float64) at the switch, and gradients stay finite at
theta = 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SMALL = 0.5  # radians: below, the coefficients come from their Taylor series
TERMS = 8  # Taylor terms (through t^14): the truncation error at SMALL is below 1e-19, float64-exact


def skew(w: Tensor) -> Tensor:
    """The cross-product matrix [w] with [w] x = w x x (Modern Robotics eq. 3.30): [..., 3] -> [..., 3, 3]."""
    x, y, z = w.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*w.shape[:-1], 3, 3)


def _series(t2: Tensor, offset: int) -> Tensor:
    """sum_k (-1)^k t^(2k) / (2k + offset)! for k < TERMS, by Horner's rule in t2 = t^2."""
    h = torch.ones_like(t2)
    for k in range(TERMS - 1, 0, -1):
        h = 1 - t2 / ((offset + 2 * k - 1) * (offset + 2 * k)) * h
    return h / math.factorial(offset)


def _coefficients(theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """A = sin(t)/t, B = (1 - cos(t))/t^2, C = (t - sin(t))/t^3 for t = theta [...] >= 0."""
    t2 = theta * theta
    small = theta < SMALL
    safe = torch.where(small, torch.ones_like(theta), theta)  # no 0/0 in the unused branch (nor its grad)
    a = torch.where(small, _series(t2, 1), torch.sin(safe) / safe)
    b = torch.where(small, _series(t2, 2), (1 - torch.cos(safe)) / safe**2)
    c = torch.where(small, _series(t2, 3), (safe - torch.sin(safe)) / safe**3)
    return a, b, c


def _norm(r: Tensor) -> Tensor:
    """|r| [...] with a finite gradient at r = 0 (where torch's norm gives NaN)."""
    sq = (r * r).sum(-1)
    return torch.where(sq > 0, sq.clamp_min(1e-30).sqrt(), torch.zeros_like(sq))


def exp_so3(r: Tensor) -> Tensor:
    """Rotation matrices R [..., 3, 3] of rotation vectors r [..., 3] (angle |r| about r / |r|; eq. 3.51)."""
    a, b, _ = _coefficients(_norm(r))
    k = skew(r)  # [..., 3, 3]
    eye = torch.eye(3, dtype=r.dtype, device=r.device)
    return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def exp_se3(r: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """The rigid motion (R [..., 3, 3], p [..., 3]) of the screw (r, v) [..., 3] each (eq. 3.88)."""
    a, b, c = _coefficients(_norm(r))
    k = skew(r)  # [..., 3, 3]
    k2 = k @ k
    eye = torch.eye(3, dtype=r.dtype, device=r.device)
    rot = eye + a[..., None, None] * k + b[..., None, None] * k2
    jac = eye + b[..., None, None] * k + c[..., None, None] * k2  # the left Jacobian of SO(3)
    return rot, (jac @ v[..., None])[..., 0]


def se3_transform(r: Tensor, v: Tensor, x: Tensor) -> Tensor:
    """x' = R x + p for the screw (r, v): points x [..., 3] -> [..., 3]."""
    rot, p = exp_se3(r, v)
    return (rot @ x[..., None])[..., 0] + p
