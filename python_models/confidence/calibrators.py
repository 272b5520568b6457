"""Calibrators of the match model's linear score: Platt scaling and interpolated isotonic regression."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit


def _fit_platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """p = sigmoid(a * z + b), a >= 0, with a whisper of L2 so separable holdouts stay finite."""
    x = np.column_stack([z, np.ones_like(z)])
    ys = 2.0 * y - 1.0

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        t = x @ w
        return -log_expit(ys * t).sum() + 1e-3 * w[0] ** 2, x.T @ (expit(t) - y) + np.array([2e-3 * w[0], 0.0])

    result = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B", bounds=[(0.0, None), (None, None)])
    return float(result.x[0]), float(result.x[1])


def _pav(values: np.ndarray, weights: np.ndarray, increasing: bool = True) -> np.ndarray:
    """Weighted pool-adjacent-violators: the closest monotone sequence (few elements; loops are fine)."""
    sign = 1.0 if increasing else -1.0
    blocks: list[list[float]] = []  # [weighted sum, weight, n elements]
    for v, w in zip((sign * values).tolist(), np.maximum(weights, 1e-12).tolist(), strict=True):
        blocks.append([v * w, w, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            s2, w2, n2 = blocks.pop()
            blocks[-1][0] += s2
            blocks[-1][1] += w2
            blocks[-1][2] += n2
    out = np.concatenate([np.full(int(n), s / w) for s, w, n in blocks]) if blocks else np.zeros(0)
    return sign * out


def _fit_isotonic(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic regression of labels on scores; knots at each pooled block's mean score and mean label.

    Interpolating between knots (instead of a step function) keeps distinct scores distinct, which matters for
    ranking the candidates of one conversion.
    """
    order = np.argsort(z, kind="stable")
    zs, ys = z[order], y[order].astype(float)
    uniq, start = np.unique(zs, return_index=True)
    weights = np.diff(np.append(start, len(zs))).astype(float)
    mean_y = np.add.reduceat(ys, start) / weights
    fitted = _pav(mean_y, weights)
    # One knot per pooled block (runs of equal fitted values), at the block's weighted mean score.
    block = np.concatenate([[0], np.cumsum(np.diff(fitted) != 0)])
    w_block = np.bincount(block, weights=weights)
    x = np.bincount(block, weights=weights * uniq) / w_block
    y_knots = np.bincount(block, weights=weights * fitted) / w_block
    return x, y_knots


def _calibrator(z: np.ndarray, y: np.ndarray, method: str) -> tuple[tuple[float, float], np.ndarray, np.ndarray]:
    if method == "platt":
        return _fit_platt(z, y), np.zeros(0), np.zeros(0)
    iso_x, iso_y = _fit_isotonic(z, y)
    return (1.0, 0.0), iso_x, iso_y


def _apply_calibration(
    z: np.ndarray, method: str, platt: tuple[float, float], iso_x: np.ndarray, iso_y: np.ndarray
) -> np.ndarray:
    if method == "platt":
        return expit(platt[0] * z + platt[1])
    if method == "isotonic":
        return np.interp(z, iso_x, iso_y)
    return expit(z)
