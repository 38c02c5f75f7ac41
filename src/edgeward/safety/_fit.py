"""Multinomial logistic regression on sparse rows, fitted with L-BFGS, in numpy only.

Rows are kept as CSR arrays (``indptr``, ``indices``, ``values``); the products with the
weight matrix are ``np.bincount`` calls, one per label, so fitting a few thousand prompts with a
quarter of a million hashed features takes well under a minute on one core, with no SciPy or
scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Rows", "fit_idf", "fit_lbfgs", "rows_from"]

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Rows:
    """Sparse rows: row ``i`` has ``values[indptr[i]:indptr[i+1]]`` at ``indices[...]``."""

    indptr: npt.NDArray[np.int64]
    indices: npt.NDArray[np.int64]
    values: F64

    @property
    def n(self) -> int:
        """Number of rows."""
        return len(self.indptr) - 1

    def row_ids(self) -> npt.NDArray[np.int64]:
        """The row of every stored value."""
        return np.repeat(np.arange(self.n, dtype=np.int64), np.diff(self.indptr))


def rows_from(pairs: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]) -> Rows:
    """CSR rows from ``(indices, values)`` pairs."""
    lengths = [len(i) for i, _ in pairs]
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    if not pairs:
        return Rows(indptr, np.zeros(0, np.int64), np.zeros(0))
    return Rows(indptr, np.concatenate([i for i, _ in pairs]).astype(np.int64),
                np.concatenate([v for _, v in pairs]).astype(np.float64))


def fit_idf(rows: Rows, n_features: int) -> npt.NDArray[np.float32]:
    """Smoothed inverse document frequency: ``ln((1 + n) / (1 + df)) + 1``."""
    df = np.bincount(rows.indices, minlength=n_features)
    return (np.log((1 + rows.n) / (1 + df)) + 1).astype(np.float32)


def weigh(rows: Rows, idf: npt.NDArray[np.float32]) -> Rows:
    """Rows with values times idf, each row scaled to unit L2 norm (as at inference)."""
    v = rows.values * idf[rows.indices]
    rid = rows.row_ids()
    norms = np.sqrt(np.bincount(rid, weights=v * v, minlength=rows.n))
    return Rows(rows.indptr, rows.indices, v / np.maximum(norms[rid], 1e-12))


def _loss_grad(theta: F64, rows: Rows, rid: npt.NDArray[np.int64], onehot: F64, sw: F64,  # noqa: PLR0917
               n_features: int, l2: float) -> tuple[float, F64]:
    k = onehot.shape[1]
    w = theta[:n_features * k].reshape(n_features, k)
    z = np.empty((rows.n, k))
    for c in range(k):
        z[:, c] = np.bincount(rid, weights=rows.values * w[rows.indices, c], minlength=rows.n)
    z += theta[n_features * k:]
    z -= z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -float((sw * (onehot * logp).sum(axis=1)).sum()) + 0.5 * l2 * float((w * w).sum())
    g = (np.exp(logp) - onehot) * sw[:, None]
    gw = np.empty_like(w)
    for c in range(k):
        gw[:, c] = np.bincount(rows.indices, weights=rows.values * g[rid, c],
                               minlength=n_features)
    gw += l2 * w
    return loss, np.concatenate([gw.ravel(), g.sum(axis=0)])


def fit_lbfgs(rows: Rows, labels: npt.NDArray[np.int64], n_features: int, n_labels: int, *,
              l2: float, iterations: int, sample_weight: F64, memory: int = 10
              ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Minimise the weighted softmax cross-entropy plus ``l2/2 * |W|^2``.

    Args:
        rows: weighted, normalised rows.
        labels: the label index of each row.
        n_features: columns of the weight matrix.
        n_labels: labels.
        l2: ridge penalty on the weights (not the bias).
        iterations: L-BFGS iterations (deterministic: no randomness anywhere).
        sample_weight: weight of each row (normalised to sum to 1 here).
        memory: L-BFGS history length.

    Returns:
        ``(weights (n_features, n_labels), bias (n_labels,))`` as float32.
    """
    rid = rows.row_ids()
    onehot = np.eye(n_labels)[labels]
    sw = sample_weight / sample_weight.sum()
    x = np.zeros(n_features * n_labels + n_labels)
    f, g = _loss_grad(x, rows, rid, onehot, sw, n_features, l2)
    hist_s: list[F64] = []
    hist_y: list[F64] = []
    for _ in range(iterations):
        q = g.copy()
        alphas = []
        for s, y in zip(reversed(hist_s), reversed(hist_y), strict=True):
            a = float(s @ q) / float(y @ s)
            alphas.append(a)
            q -= a * y
        q *= (float(hist_s[-1] @ hist_y[-1]) / float(hist_y[-1] @ hist_y[-1])) if hist_s \
            else 1.0 / max(float(np.linalg.norm(q)), 1e-12)
        for (s, y), a in zip(zip(hist_s, hist_y, strict=True), reversed(alphas), strict=True):
            q += s * (a - float(y @ q) / float(y @ s))
        d = -q
        slope = float(g @ d)
        if slope >= 0:
            d, slope, hist_s, hist_y = -g, -float(g @ g), [], []
        step = 1.0
        while True:
            x_new = x + step * d
            f_new, g_new = _loss_grad(x_new, rows, rid, onehot, sw, n_features, l2)
            if f_new <= f + 1e-4 * step * slope or step < 1e-10:
                break
            step *= 0.5
        s, y = x_new - x, g_new - g
        if float(s @ y) > 1e-12:
            hist_s.append(s)
            hist_y.append(y)
            if len(hist_s) > memory:
                hist_s.pop(0)
                hist_y.pop(0)
        x, f, g = x_new, f_new, g_new
        if float(np.linalg.norm(g)) < 1e-7:
            break
    w = x[:n_features * n_labels].reshape(n_features, n_labels).astype(np.float32)
    return w, x[n_features * n_labels:].astype(np.float32)
