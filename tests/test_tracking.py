import numpy as np
import pytest

from amplify_core.samples import MovingSquare
from amplify_core.tracking import CoTrackerTracker, LucasKanadeTracker, make_tracker
from amplify_core.tracks import grid_points


def interior_errors(scene, result, margin=6.0):
    """Euclidean error (px) of every tracked step of points that stay inside the square."""
    errors = []
    horizon = result.points.shape[1]
    for s in range(scene.num_frames - horizon + 1):
        truth = scene.true_tracks(result.points[s, 0], s, horizon)
        keep = np.all([scene.inside_square(truth[j], s + j, margin) for j in range(horizon)], axis=0)
        keep &= np.all((truth >= margin) & (truth <= scene.size - 1 - margin), axis=(0, 2))  # stays in view
        errors.append(np.linalg.norm(result.points[s] - truth, axis=-1)[1:, keep].ravel())
    return np.concatenate(errors)


@pytest.mark.parametrize("motion, mean_px, p95_px", [
    (dict(velocity=(1.3, 0.7)), 0.05, 0.1),                              # translating
    (dict(velocity=(0.0, 0.0), angular_velocity=0.4), 0.1, 0.25),        # rotating 8 deg/s
    (dict(velocity=(0.8, -0.5), angular_velocity=0.3), 0.1, 0.25),       # both
    (dict(velocity=(4.0, -2.0), half_side=40), 0.1, 0.1),                # fast: the pyramid retry path
])
def test_tracker_error_on_interior_points_is_sub_tenth_pixel(motion, mean_px, p95_px):
    scene = MovingSquare(num_frames=26, **motion)
    errors = interior_errors(scene, LucasKanadeTracker().track(scene.video()))
    assert len(errors) > 1500
    assert errors.mean() < mean_px
    assert np.percentile(errors, 95) < p95_px


def test_velocity_prior_matches_plain_pyramid_accuracy():
    scene = MovingSquare(num_frames=24, velocity=(2.0, 1.0), angular_velocity=0.3)
    video = scene.video()
    fast = interior_errors(scene, LucasKanadeTracker().track(video))
    plain = interior_errors(scene, LucasKanadeTracker(velocity_prior=False).track(video))
    assert fast.mean() <= plain.mean() + 0.01


@pytest.mark.parametrize("velocity_prior", [True, False])
def test_one_pass_equals_per_window_loop(velocity_prior):
    video = MovingSquare(num_frames=40, velocity=(2.2, -1.1), angular_velocity=0.7, seed=3).video()
    tracker = LucasKanadeTracker(velocity_prior=velocity_prior)
    a, b = tracker.track(video), tracker.track_naive(video)
    assert np.abs(a.points - b.points).max() <= 0.01
    np.testing.assert_array_equal(a.visible, b.visible)


def test_output_contract_and_grid_start():
    video = MovingSquare(size=96, num_frames=20).video()
    r = LucasKanadeTracker().track(video)
    assert r.points.shape == (20, 16, 400, 2) and r.points.dtype == np.float32
    assert r.visible.shape == (20, 16, 400) and r.visible.dtype == bool
    np.testing.assert_array_equal(r.points[:, 0], np.broadcast_to(grid_points(96, 96), (20, 400, 2)))


def test_video_shorter_than_horizon_is_padded_with_the_last_frame():
    scene = MovingSquare(num_frames=6, velocity=(1.0, 0.5))
    r = LucasKanadeTracker().track(scene.video())
    assert r.points.shape == (6, 16, 400, 2)
    # window 0 moves for 5 steps, then stands still on the repeated last frame
    np.testing.assert_array_equal(r.points[0, 5:], np.broadcast_to(r.points[0, 5], (11, 400, 2)))
    assert np.abs(r.points[0, 5] - r.points[0, 0]).max() > 2.0
    # the last frame's window never moves
    np.testing.assert_array_equal(r.points[5], np.broadcast_to(r.points[5, 0], (16, 400, 2)))
    # a single frame works too
    assert LucasKanadeTracker().track(scene.video()[:1]).points.shape == (1, 16, 400, 2)


def test_lost_points_are_invisible_and_hold_their_position():
    video = MovingSquare(num_frames=20, velocity=(1.0, 0.0)).video()
    video[10:] = 128  # the scene vanishes: no texture to track
    r = LucasKanadeTracker().track(video)
    assert not r.visible[5, 6:].any()  # window 5 reaches frame 11 at step 6
    np.testing.assert_array_equal(r.points[5, 6:], np.broadcast_to(r.points[5, 5], (10, 400, 2)))
    assert r.visible[0, :10].mean() > 0.95


def test_forward_backward_check_drops_points_that_do_not_track_back():
    """A frame the scene cannot be followed into (fresh noise, as when a window lies on a moving edge and the match
    jumps to another texture): forward LK still reports most points found, the backward track does not return to
    where they started, and the check marks them lost."""
    video = MovingSquare(num_frames=14, velocity=(1.0, 0.5)).video()
    video[10:] = np.random.default_rng(0).integers(0, 256, video[10:].shape, dtype=np.uint8)
    checked = LucasKanadeTracker().track(video)  # the default: fb_threshold 1 px
    unchecked = LucasKanadeTracker(fb_threshold=None).track(video)
    step = (0, 10)  # window 0 crosses from frame 9 into the noise at step 10
    assert checked.visible[0, 9].mean() > 0.9 and unchecked.visible[0, 9].mean() > 0.9
    assert unchecked.visible[step].mean() > 0.5
    assert checked.visible[step].mean() < 0.5 * unchecked.visible[step].mean()
    # where nothing goes wrong the check changes (almost) nothing: the same points, where both keep them
    both = checked.visible[0, :10] & unchecked.visible[0, :10]
    assert both.mean() > 0.95
    np.testing.assert_array_equal(checked.points[0, :10][both], unchecked.points[0, :10][both])


def test_bad_tracker_settings_are_refused():
    with pytest.raises(ValueError, match="win_size"):
        LucasKanadeTracker(win_size=8)
    with pytest.raises(ValueError, match="unknown tracker 'raft'"):
        make_tracker("raft")


class ConstantVelocityPredictor:
    """Stands in for CoTracker: same call contract, moves every query by (+1, -0.5) px per frame."""

    def __init__(self):
        self.calls = []

    def __call__(self, video, queries):
        import torch
        b, t = video.shape[:2]
        self.calls.append((tuple(video.shape), tuple(queries.shape), float(video.max())))
        steps = torch.arange(t, dtype=torch.float32)[None, :, None, None]
        tracks = queries[:, None, :, 1:] + steps * torch.tensor([1.0, -0.5])
        return tracks, torch.ones(b, t, queries.shape[1], dtype=torch.bool)


def test_cotracker_adapter_contract_with_a_stand_in_predictor():
    video = MovingSquare(size=64, num_frames=7).video()
    predictor = ConstantVelocityPredictor()
    r = CoTrackerTracker(predictor=predictor, batch=3).track(video)
    assert r.points.shape == (7, 16, 400, 2) and r.visible.all()
    # video in (B, T, 3, H, W) float 0-255, queries (B, N, 3) as (t, x, y), batched 3 + 3 + 1
    assert [c[0] for c in predictor.calls] == [(3, 16, 3, 64, 64), (3, 16, 3, 64, 64), (1, 16, 3, 64, 64)]
    assert predictor.calls[0][1] == (3, 400, 3) and predictor.calls[0][2] > 1.0
    np.testing.assert_allclose(r.points[:, 0], np.broadcast_to(grid_points(64, 64), (7, 400, 2)))
    np.testing.assert_allclose(r.points[2, 15] - r.points[2, 0], np.broadcast_to([15.0, -7.5], (400, 2)), atol=1e-4)


def test_real_cotracker_when_installed():
    cotracker = pytest.importorskip("cotracker", reason="co-tracker is not installed (optional backend)")
    import os
    ckpt = os.environ.get("AMPLIFY_COTRACKER_CHECKPOINT")
    if not ckpt:
        pytest.skip("set AMPLIFY_COTRACKER_CHECKPOINT to a local CoTracker .pth to run this test")
    scene = MovingSquare(num_frames=17, velocity=(1.0, 0.5))
    r = CoTrackerTracker(checkpoint=ckpt, batch=1).track(scene.video()[:17])
    assert r.points.shape == (17, 16, 400, 2)
    assert np.median(interior_errors(scene, r)) < 0.5
    assert cotracker is not None


def test_points_that_a_guess_cannot_explain_are_retracked_with_the_pyramid(monkeypatch):
    retried = []
    original = LucasKanadeTracker._lk

    def counting(self, prev, nxt, pts, guess, max_level):
        if guess is None:
            retried.append(len(pts))
        return original(self, prev, nxt, pts, guess, max_level)

    monkeypatch.setattr(LucasKanadeTracker, "_lk", counting)
    scene = MovingSquare(num_frames=20, velocity=(4.0, -2.0), half_side=40)
    LucasKanadeTracker().track(scene.video())
    # frame 0 has no motion history (guess 0) while the square jumps 4.5 px: those points are retried
    assert retried and retried[0] > 50
    assert sum(retried) < 0.2 * 20 * 15 * 400  # ... but most points are explained by their guess


def test_benchmark_prints_both_forms_their_ratio_and_the_end_to_end_time():
    import subprocess
    import sys

    # its own process: the benchmark pins itself to one core
    out = subprocess.run([sys.executable, "-m", "training.benchmark_tracking", "--frames", "20", "--rounds", "1",
                          "--episode-frames", "20"], capture_output=True, text=True, check=True).stdout
    for line in ("one-pass tracker", "per-window loop", "ratio", "target >= 150 frames/s per view",
                 "end to end       : 3 views x 20 frames", "pinned to core 0"):
        assert line in out, out
    # the same tracks both ways, read back from the printout
    assert float(out.split("max track difference ")[1].split(" px")[0]) <= 0.01
