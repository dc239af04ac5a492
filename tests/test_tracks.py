import numpy as np
import pytest

from amplify_core.tracks import (
    NUM_CLASSES, class_to_displacement, class_to_velocity, denormalize, grid_points, integrate_velocities,
    labels_to_tracks, normalize, resample_tracks, source_horizon, tracks_to_labels, velocities, velocity_to_class,
)


def test_grid_is_uniform_and_symmetric_in_normalised_space():
    g = grid_points(128, 128)
    assert g.shape == (400, 2)
    n = normalize(g, 128, 128)
    np.testing.assert_allclose(np.unique(n[:, 0]), np.linspace(-0.95, 0.95, 20), atol=1e-6)
    np.testing.assert_allclose(g[1] - g[0], [6.4, 0.0], atol=1e-5)  # row-major, 128 / 20 px apart


def test_normalise_puts_image_edges_at_plus_minus_one_and_inverts():
    px = np.array([[-0.5, -0.5], [127.5, 63.5], [63.5, 31.5]], np.float32)
    np.testing.assert_allclose(normalize(px, 64, 128), [[-1, -1], [1, 1], [0, 0]], atol=1e-6)
    pts = np.random.default_rng(0).uniform(0, 100, (50, 2)).astype(np.float32)
    np.testing.assert_allclose(denormalize(normalize(pts, 90, 120), 90, 120), pts, atol=1e-4)


def test_label_round_trip_class_to_displacement_to_class_is_identity():
    classes = np.arange(NUM_CLASSES)
    np.testing.assert_array_equal(velocity_to_class(class_to_velocity(classes)), classes)
    disp = class_to_displacement(classes)
    assert disp.min() == -7 and disp.max() == 7
    assert tuple(class_to_displacement(112)) == (0, 0)  # the centre means no motion
    assert tuple(class_to_displacement(224)) == (7, 7)
    assert tuple(class_to_displacement(0)) == (-7, -7)
    assert tuple(class_to_displacement(8)) == (1, -7)  # row-major: x varies fastest


def test_labels_round_and_clamp_pixel_displacements():
    px_per_unit = 128 / 2
    v = np.array([[0.4, -0.6], [2.6, 0.0], [30.0, -12.0], [-7.49, 7.51]]) / px_per_unit
    np.testing.assert_array_equal(class_to_displacement(velocity_to_class(v)),
                                  [[0, -1], [3, 0], [7, -7], [-7, 7]])


def test_bad_class_index_is_an_error():
    with pytest.raises(ValueError, match="225"):
        class_to_displacement(np.array([3, 225]))


def test_source_horizon_keeps_point_eight_seconds():
    assert source_horizon(20) == 16
    assert source_horizon(5) == 4  # BridgeData: 4 frames interpolated to 16 (paper D.4)
    assert source_horizon(30) == 24
    assert source_horizon(10) == 8


def test_cubic_resampling_is_exact_on_cubic_motion_and_keeps_end_points():
    k, horizon = 4, 16
    t_src, t_dst = np.linspace(0, 1, k), np.linspace(0, 1, horizon)
    f = lambda t: 0.3 * t**3 - 0.2 * t**2 + 0.1 * t  # noqa: E731
    tracks = np.stack([f(t_src), -f(t_src)], -1)[None, :, None, :].repeat(5, axis=2)  # (1, K, 5, 2)
    vis = np.ones((1, k, 5), bool)
    vis[0, 2, 1] = False
    out, out_vis = resample_tracks(tracks, vis, horizon)
    assert out.shape == (1, horizon, 5, 2)
    np.testing.assert_allclose(out[0, :, 0, 0], f(t_dst), atol=1e-6)
    # a point invisible at source step 2 is invisible at every output step that touches it
    touched = (np.floor(t_dst * 3) == 2) | (np.ceil(t_dst * 3) == 2)
    np.testing.assert_array_equal(out_vis[0, :, 1], ~touched)
    assert out_vis[0, :, 0].all()


def test_velocities_and_integration_invert_each_other():
    tr = np.random.default_rng(1).normal(size=(3, 16, 10, 2)).astype(np.float32)
    v = velocities(tr)
    assert v.shape == (3, 15, 10, 2)
    np.testing.assert_allclose(integrate_velocities(tr[:, 0], v), tr, atol=1e-5)


def test_track_labels_are_pixel_to_pixel_moves_and_integrate_back_without_drift():
    rng = np.random.default_rng(2)
    start = rng.uniform(-0.8, 0.8, (400, 2))
    steps_px = rng.uniform(-3.4, 3.4, (15, 400, 2))  # sub-pixel motion every step
    tracks = np.concatenate([start[None], start[None] + np.cumsum(steps_px, 0) * 2 / 128])
    labels = tracks_to_labels(tracks)
    assert labels.shape == (15, 400)
    back = labels_to_tracks(tracks[0], labels)
    # the rebuilt track is the rounded track: within half a pixel per axis at EVERY step (no drift)
    assert np.abs(denormalize(back, 128, 128) - denormalize(tracks, 128, 128)).max() <= 0.5 + 1e-4


def test_steps_beyond_the_window_are_clamped():
    tracks = np.full((2, 1, 2), 0.3 * 2 / 128)  # start 0.3 px off a pixel centre: no rounding ties
    tracks[1, 0] += [20 * 2 / 128, -1 * 2 / 128]  # 20 px right, 1 px up
    assert tuple(class_to_displacement(tracks_to_labels(tracks)[0, 0])) == (7, -1)


def test_steps_past_the_end_of_a_video_are_not_observed():
    from amplify_core.tracks import observed_steps

    seen = observed_steps(5, 4)
    assert seen.shape == (5, 4)
    assert seen[0].all() and seen[1].all()  # windows 0 and 1 end inside the video (frames 3 and 4)
    assert seen[2].tolist() == [True, True, True, False]
    assert seen[4].tolist() == [True, False, False, False]  # the last frame's window has only its start


def test_label_statistics_count_moving_points_and_trusted_steps_only():
    from amplify_core.tracks import NUM_CLASSES, label_mask, label_statistics, moving_points, normalize

    # one window, 4 points, 16 steps: a point moving 2 px per step to the right, one moving 0.3 px per step (its
    # labels are mostly "no motion"), two static points; 128 px label scale
    steps = np.arange(16, dtype=np.float32)
    pixels = np.zeros((1, 16, 4, 2), np.float32) + 40.0
    pixels[0, :, 0, 0] += 2.0 * steps
    pixels[0, :, 1, 0] += 0.3 * steps
    tracks = normalize(pixels, 128, 128)
    visible = np.ones((1, 16, 4), bool)
    visible[0, 8:, 0] = False  # the fast point is lost half way: its later steps are not trusted
    labels = tracks_to_labels(tracks)
    assert moving_points(tracks, visible).tolist() == [[True, True, False, False]]
    mask = label_mask(visible)
    assert mask[0, :, 0].sum() == 7 and mask[0, :, 1:].all()
    stats = label_statistics(tracks, visible, labels)
    centre = NUM_CLASSES // 2
    assert stats["trusted_labels"] == 7 + 3 * 15
    assert stats["moving_labels"] == 7 + 15
    assert stats["moving_median_step_px"] == pytest.approx(0.3, abs=1e-4)  # 15 slow steps outnumber 7 fast ones
    slow_moves = int((labels[0, :, 1] != centre).sum())  # rounding makes a 1 px move every few steps
    assert stats["moving_not_centre_fraction"] == pytest.approx((7 + slow_moves) / 22)
    assert stats["centre_fraction"] == pytest.approx((15 - slow_moves + 30) / 52)
