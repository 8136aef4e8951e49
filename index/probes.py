"""Many small logistic probes at once: the random directions TCAV tests concepts against.

:func:`index.usertags.fit_logistic` fits one probe with scikit-learn (≈3 ms for 60 rows
of 200-d on one thread, most of it per-call overhead); the significance test needs 3000
of them per space (:data:`index.tcav.RANDOM_CAVS`). :func:`fit_directions` fits a batch of
same-sized problems together and reaches the same optimum: the same objective
(L2-regularised logistic regression, ``C`` = :data:`index.usertags.C`, balanced class
weights, unpenalised intercept, on features standardised per problem), solved by Newton's
method with every step a few batched ``n x n`` solves instead of ``d x d`` ones
(Woodbury: ``n`` rows ≤ ``d`` axes here). scikit-learn has no batched solver; the test
holds this one to it (cosine ≥ 0.9999).
"""

from __future__ import annotations

import numpy as np

MAX_ITER = 50
TOL = 1e-8  # on the gradient's largest entry, relative to the rows' count


def _rows_times(z, v):
    """``[b, n]``: each problem's rows times its vector ``v`` ``[b, d]`` (batched BLAS)."""
    return (z @ v[:, :, None])[:, :, 0]


def _rows_weighted(z, r):
    """``[b, d]``: each problem's rows weighted by ``r`` ``[b, n]`` and summed."""
    return (r[:, None, :] @ z)[:, 0, :]


def _objective(z, y, s, w, b, c):
    f = _rows_times(z, w) + b[:, None]
    # log(1 + exp(-f)) for y = 1, log(1 + exp(f)) for y = 0, without overflow
    loss = np.logaddexp(0.0, np.where(y > 0, -f, f))
    return c * (s * loss).sum(1) + 0.5 * (w * w).sum(1)


def fit_directions(x: np.ndarray, y: np.ndarray, c: float | None = None) -> np.ndarray:
    """Unit probe directions ``[b, d]`` (float32, in the raw feature space) of ``b`` problems.

    Parameters
    ----------
    x : numpy.ndarray
        ``[b, n, d]``: each problem's rows.
    y : numpy.ndarray
        ``[b, n]`` labels 0/1, both present in every problem.
    c : float, optional
        Inverse L2 strength (default :data:`index.usertags.C`).
    """
    if c is None:
        from index.usertags import C as c
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    bsz, n, d = x.shape
    mean = x.mean(1, keepdims=True)
    scale = x.std(1, keepdims=True)
    scale[scale < 1e-6] = 1.0
    z = (x - mean) / scale
    positives = y.sum(1, keepdims=True)
    s = np.where(y > 0, n / (2 * positives), n / (2 * (n - positives)))  # "balanced" weights
    k = z @ z.transpose(0, 2, 1)  # [b, n, n]
    w = np.zeros((bsz, d))
    b = np.zeros(bsz)
    eye = np.eye(n)
    value = _objective(z, y, s, w, b, c)
    for _ in range(MAX_ITER):
        f = _rows_times(z, w) + b[:, None]
        p = 1.0 / (1.0 + np.exp(-f))
        r = c * s * (p - y)  # dF/df
        g_w = _rows_weighted(z, r) + w
        g_b = r.sum(1)
        if max(np.abs(g_w).max(), np.abs(g_b).max()) < TOL * n:
            break
        dd = c * s * p * (1 - p)  # the Hessian's diagonal in f
        root = np.sqrt(dd)
        # (I + Z^T D Z)^-1 v = v - Z^T S (I + S K S)^-1 S Z v, with S = D^1/2
        m = eye + root[:, :, None] * k * root[:, None, :]
        u = _rows_weighted(z, dd)  # H_wb = Z^T D 1
        rhs = np.stack([root * _rows_times(z, g_w), root * _rows_times(z, u)], 2)
        sol = np.linalg.solve(m, rhs)  # [b, n, 2]
        back = z.transpose(0, 2, 1) @ (root[:, :, None] * sol)  # [b, d, 2]
        a_g = g_w - back[:, :, 0]
        a_u = u - back[:, :, 1]
        step_b = (g_b - (u * a_g).sum(1)) / (dd.sum(1) - (u * a_u).sum(1))
        step_w = a_g - a_u * step_b[:, None]
        t = np.ones(bsz)
        accepted = False
        for _halving in range(30):  # damped where a full step would raise the objective
            new = _objective(z, y, s, w - t[:, None] * step_w, b - t * step_b, c)
            worse = new > value + 1e-12 * np.abs(value)
            if not worse.any():
                accepted = True
                break
            t = np.where(worse, t / 2, t)
        w = w - t[:, None] * step_w
        b = b - t * step_b
        # The objective at the step taken was just computed, unless every halving failed.
        value = new if accepted else _objective(z, y, s, w, b, c)
    raw = w / scale[:, 0, :]
    norms = np.linalg.norm(raw, axis=1, keepdims=True)
    return (raw / np.where(norms > 0, norms, 1.0)).astype(np.float32)
