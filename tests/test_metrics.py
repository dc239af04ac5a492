import numpy as np
import pytest

from amplify_core.metrics import delta_auc, pixel_accuracy, track_metrics, track_mse

PX = 2 / 128  # one pixel of a 128 px image in normalised units


def test_mse_hand_computed():
    ref = np.zeros((2, 1, 2))
    pred = np.array([[[0.1, 0.0]], [[0.0, -0.3]]])
    assert track_mse(pred, ref) == pytest.approx((0.01 + 0.09) / 4)


def test_pixel_accuracy_counts_points_on_the_exact_reference_pixel():
    ref = np.zeros((1, 4, 2))  # normalised 0 is pixel 63.5 -> rounds to 64
    pred = np.array([[[0.2 * PX, 0], [0.45 * PX, 0.45 * PX], [1.0 * PX, 0], [0, -1.2 * PX]]])
    # offsets in px: 0.2 -> 63.7 (64, same), 0.45 -> 63.95 (64, same), 1.0 -> 64.5 (64, same), -1.2 -> 62.3 (62)
    assert pixel_accuracy(pred, ref) == pytest.approx(3 / 4)


def test_delta_auc_hand_computed():
    ref = np.zeros((2, 2, 2))
    # distances in px: step 0: 0 and 2.5; step 1: 5 and 20
    pred = np.array([[[0, 0], [2.5 * PX, 0]], [[3 * PX, 4 * PX], [20 * PX, 0]]])
    # thresholds 1..10 (strict): d=0 under all 10; d=2.5 under 3..10 (8); d=5 under 6..10 (5); d=20 none
    expected = (10 + 8 + 5 + 0) / 40
    assert delta_auc(pred, ref) == pytest.approx(expected)


def test_perfect_prediction_scores_perfectly():
    ref = np.random.default_rng(0).uniform(-0.9, 0.9, (15, 400, 2))
    m = track_metrics(ref, ref)
    assert m == {"mse": 0.0, "pixel_accuracy": 1.0, "delta_auc": 1.0}


def test_metrics_refuse_mismatched_or_nan_input():
    with pytest.raises(ValueError, match="must match"):
        track_mse(np.zeros((2, 3, 2)), np.zeros((2, 4, 2)))
    bad = np.zeros((2, 3, 2))
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        delta_auc(bad, np.zeros((2, 3, 2)))
