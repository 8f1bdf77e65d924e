"""Comparison helpers for the reference fixtures."""

import numpy as np
import torch


def assert_close_ref(actual, expected, name: str, rtol: float = 1e-4, atol_scale: float = 1e-5) -> float:
    """rtol plus atol = atol_scale * max|expected|; returns max |diff| / max|expected|."""
    actual = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    limit = rtol * np.abs(expected.astype(np.float64)) + atol_scale * scale
    worst = float(np.max(diff / np.maximum(limit, 1e-300))) if diff.size else 0.0
    rel = float(diff.max() / scale) if diff.size and scale > 0 else float(diff.max() if diff.size else 0.0)
    assert np.all(diff <= limit), (
        f"{name}: max |diff| = {float(diff.max()):.3e}, max |diff|/max|x| = {rel:.3e} "
        f"(worst diff/limit {worst:.2f}, rtol={rtol}, atol={atol_scale * scale:.3e})"
    )
    return rel
