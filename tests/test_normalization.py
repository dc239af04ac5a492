"""Normalisation of proprioception and actions: a dimension the demos never move must not blow up in closed loop."""

import numpy as np
import pytest

from amplify_core.normalization import MIN_STD, Normalizer


def still_wrist_demos():
    """Six joints and a gripper over 200 frames; wrist 2 (index 4) moves by a hair (std ~0.0005 rad), as in the
    workcell demos, the others by tenths of a radian."""
    rng = np.random.default_rng(0)
    data = rng.normal(0.0, 0.3, (200, 7))
    data[:, 4] = -1.5708 + rng.normal(0.0, 0.0005, 200)
    return data


def test_a_near_constant_dimension_is_centred_not_scaled():
    norm = Normalizer.fit(still_wrist_demos())
    assert norm.std[4] == 1.0  # centred only
    assert np.all(np.abs(norm.std[[0, 1, 2, 3, 5, 6]] - 0.3) < 0.05)  # the others keep their own spread
    # the closed-loop drift of the issue: a slightly-off rotation makes IK turn the still wrist a little more each
    # step; with the std floored at 1e-3 its normalised value went 0.04 -> 2.9 -> 10.7 -> 30.6 -> 80
    drift = np.array([0.00004, 0.0029, 0.0107, 0.0306, 0.08])
    q = np.tile(norm.mean, (len(drift), 1))
    q[:, 4] += drift
    z = norm.normalize(q.astype(np.float32))[:, 4]
    assert np.all(np.abs(z) <= 0.081), z  # a drift of 0.08 rad is an input of 0.08, well inside what training saw


def test_moving_dimensions_are_standardised():
    data = still_wrist_demos()
    z = Normalizer.fit(data).normalize(data.astype(np.float32))
    moving = [0, 1, 2, 3, 5, 6]
    np.testing.assert_allclose(z[:, moving].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z[:, moving].std(0), 1.0, atol=1e-4)


def test_the_threshold_is_min_std_and_stored_statistics_load_unchanged():
    norm = Normalizer(np.zeros(3), [MIN_STD * 0.99, MIN_STD * 1.01, 0.0])
    assert norm.std.tolist() == pytest.approx([1.0, MIN_STD * 1.01, 1.0])
    # a checkpoint keeps the std it was trained with: loading it must not re-apply the rule (old checkpoints were
    # trained with a 1e-3 floor)
    old = Normalizer.from_dict({"mean": [0.0, 0.0], "std": [1e-3, 0.2]})
    assert old.std.tolist() == pytest.approx([1e-3, 0.2])
    x = np.array([0.5, 0.5], np.float32)
    np.testing.assert_allclose(old.unnormalize(old.normalize(x)), x, rtol=1e-6)
