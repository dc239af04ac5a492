"""The three AMPLIFY models: they learn, their masks are causal, the KV cache is exact, inputs are checked."""

import numpy as np
import pytest
import torch

from amplify_core.configs import ForwardConfig, InverseConfig, TokenizerConfig, VisionConfig
from amplify_core.forward_dynamics import ForwardDynamics
from amplify_core.inverse_dynamics import InverseDynamics
from amplify_core.metrics import delta_auc
from amplify_core.preprocessing import compute_view_tracks
from amplify_core.samples import MovingSquare
from amplify_core.tokenizer import MotionTokenizer
from amplify_core.tracking import LucasKanadeTracker
from amplify_core.tracks import labels_to_tracks, velocities

VISION = VisionConfig(image_size=64, width=8)


def small_tokenizer(views=("front",), num_points=100):
    return MotionTokenizer(TokenizerConfig(views=list(views), num_points=num_points, hidden=64, layers=2, heads=4,
                                           decoder_layers=1, dropout=0.0))


def small_forward(views=2, codebook=1920, text_dim=16):
    return ForwardDynamics(ForwardConfig(hidden=64, layers=2, heads=4, dropout=0.0, text_dim=text_dim,
                                         vision=VISION), views, codebook, 15)


def small_inverse(use_codes=True, text_dim=0, **kwargs):
    return InverseDynamics(InverseConfig(hidden=64, layers=2, heads=4, dropout=0.0, action_dim=7, proprio_dim=7,
                                         use_codes=use_codes, text_dim=text_dim, vision=VISION, **kwargs), 2, 1920, 15)


def fit(model, loss_fn, steps, lr=1e-3):
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    first = None
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    return first, loss.item()


@pytest.fixture(scope="module")
def real_tracks():
    """LK tracks (a 10x10 grid keeps the test fast) of two moving squares: 4 windows of 16 steps, one view."""
    out = []
    for seed, motion in ((0, dict(velocity=(1.5, 0.5))), (1, dict(velocity=(0.0, 0.0), angular_velocity=1.5))):
        video = MovingSquare(size=64, num_frames=20, half_side=18, seed=seed, **motion).video()
        out.append(compute_view_tracks(video, 20.0, LucasKanadeTracker(grid_size=10)))
    tracks = np.concatenate([vt.tracks[:2] for vt in out])  # (4, 16, 100, 2)
    labels = np.concatenate([vt.labels[:2] for vt in out])  # (4, 15, 100)
    return tracks, labels


def test_tokenizer_overfits_a_fixed_batch_to_high_delta_auc(real_tracks):
    tracks, labels = real_tracks
    torch.manual_seed(0)
    model = small_tokenizer()
    vel = torch.from_numpy(velocities(tracks)).unsqueeze(1)  # (4, 1, 15, 100, 2)
    lab = torch.from_numpy(labels.astype(np.int64)).unsqueeze(1)
    first, last = fit(model, lambda: model.loss(model(vel)[0], lab), steps=150, lr=3e-3)
    assert last < 0.2 * first
    model.eval()
    with torch.no_grad():
        logits, codes = model(vel)
    predicted = labels_to_tracks(tracks[:, 0], logits.argmax(-1)[:, 0].numpy())
    score = delta_auc(predicted[:, 1:], tracks[:, 1:])
    assert score >= 0.95, score
    assert codes.shape == (4, 15) and codes.max() < 1920


def test_tokenizer_encoder_is_causal_in_time(real_tracks):
    torch.manual_seed(0)
    model = small_tokenizer().eval()
    vel = torch.from_numpy(velocities(real_tracks[0][:2])).unsqueeze(1)
    latents, codes = model.encode(vel)
    changed = vel.clone()
    changed[:, :, 9:] += 0.05  # change the motion from step 9 on
    latents2, codes2 = model.encode(changed)
    torch.testing.assert_close(latents[:, :9], latents2[:, :9])
    assert not torch.equal(latents[:, 9:], latents2[:, 9:])


def batch_for_forward(n=8, views=2, size=48, text_dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, views, 3, size, size), dtype=torch.uint8, generator=g)
    text = torch.randn(n, text_dim, generator=g)
    codes = torch.randint(0, 1920, (n, 15), generator=g)
    return images, text, codes


def test_forward_model_overfits_a_fixed_batch():
    torch.manual_seed(0)
    model = small_forward()
    images, text, codes = batch_for_forward()
    fit(model, lambda: model.loss(model(images, text, codes), codes), steps=150, lr=2e-3)
    model.eval()
    with torch.no_grad():
        acc = (model(images, text, codes).argmax(-1) == codes).float().mean().item()
        generated = model.generate(images, text)
    assert acc >= 0.9, acc
    assert (generated == codes).float().mean().item() >= 0.9


def test_forward_mask_is_causal_over_codes():
    torch.manual_seed(0)
    model = small_forward().eval()
    images, text, codes = batch_for_forward(n=2)
    with torch.no_grad():
        base = model(images, text, codes)
        later = codes.clone()
        later[:, 10:] = (later[:, 10:] + 7) % 1920
        changed = model(images, text, later)
    # the logit predicting code k sees codes < k: codes 10.. changed -> logits 0..10 unchanged
    torch.testing.assert_close(base[:, :11], changed[:, :11])
    assert not torch.allclose(base[:, 11:], changed[:, 11:])


def test_cached_and_uncached_decoding_agree():
    torch.manual_seed(0)
    model = small_forward().eval()
    images, text, _ = batch_for_forward(n=3)
    greedy_cached = model.generate(images, text, use_cache=True)
    greedy_plain = model.generate(images, text, use_cache=False)
    torch.testing.assert_close(greedy_cached, greedy_plain, rtol=0, atol=0)
    sampled = [model.generate(images, text, use_cache=c, temperature=1.0, generator=torch.Generator().manual_seed(3))
               for c in (True, False)]
    torch.testing.assert_close(sampled[0], sampled[1], rtol=0, atol=0)
    assert not torch.equal(sampled[0], greedy_cached)  # sampling really samples


def test_cache_step_logits_equal_teacher_forcing():
    torch.manual_seed(0)
    model = small_forward().eval()
    images, text, codes = batch_for_forward(n=2)
    with torch.no_grad():
        teacher = model(images, text, codes)
        logits, caches = model.start(model.conditioning(images, text))
        steps = [logits]
        for k in range(1, 15):
            logits, caches = model.step(codes[:, k - 1], k, caches)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), teacher, atol=1e-4, rtol=1e-4)


def test_inverse_model_nll_falls_well_below_its_start():
    torch.manual_seed(0)
    model = small_inverse(fixed_std=None)  # learned sigma: the NLL can fall far below its start
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (8, 2, 3, 48, 48), dtype=torch.uint8, generator=g)
    proprio = torch.randn(8, 7, generator=g)
    codes = torch.randint(0, 1920, (8, 15), generator=g)
    actions = torch.randn(8, 16, 7, generator=g)
    first, last = fit(model, lambda: model.loss(*model(images, proprio, codes), actions), steps=200, lr=2e-3)
    assert last < first - 5.0, (first, last)  # per-sample discounted NLL, summed over 7 dims


def test_fixed_sigma_head_fits_the_positions_beside_constant_dimensions():
    """The default head (fixed sigma) fits every action dimension of its own training data; with a learned sigma the
    dimensions that are constant within a task (the gripper's rotation) drive their log-std to the clamp and, under
    gradient clipping, starve the positions (the issue: 4.3 cm first-action error on the training demos)."""
    vision = VisionConfig(image_size=32, width=4, stages=3)
    g = torch.Generator().manual_seed(0)
    n = 64
    proprio = torch.randn(n, 7, generator=g)
    task = (torch.arange(n) % 2).float()
    positions = (proprio @ torch.randn(7, 3, generator=g))[:, None, :] + 0.1 * torch.arange(16)[None, :, None]
    rotation = torch.stack([task * 2 - 1, 1 - task * 2, torch.zeros(n)], 1)[:, None, :] * 0.001
    actions = torch.cat([positions, rotation.expand(-1, 16, -1), task[:, None, None].expand(-1, 16, 1)], -1)
    images = torch.zeros(n, 1, 3, 32, 32, dtype=torch.uint8)
    errors = {}
    for name, fixed_std in (("default", InverseConfig().fixed_std), ("learned", None)):
        torch.manual_seed(0)
        model = InverseDynamics(InverseConfig(hidden=32, layers=1, heads=2, dropout=0.0, use_codes=False,
                                              fixed_std=fixed_std, vision=vision), 1, 1920, 15)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        for _ in range(300):
            loss = model.loss(*model(images, proprio), actions)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # as the trainer does
            opt.step()
        with torch.no_grad():
            mean, log_std = model(images, proprio)
        errors[name] = (mean - actions).abs().mean(dim=(0, 1))[:3]  # per position dimension
        if name == "default":
            assert torch.all(log_std == log_std[0, 0, 0])  # sigma is fixed
    assert torch.all(errors["default"] < 0.4), errors  # positions have std ~2.6 here
    assert torch.all(errors["learned"] > 3 * errors["default"]), errors


def test_inverse_only_mode_ignores_codes_and_full_mode_requires_them():
    torch.manual_seed(0)
    bc = small_inverse(use_codes=False).eval()
    images = torch.randint(0, 256, (2, 2, 3, 48, 48), dtype=torch.uint8)
    proprio = torch.zeros(2, 7)
    mean, log_std = bc(images, proprio)
    assert mean.shape == (2, 16, 7) and log_std.shape == (2, 16, 7)
    with pytest.raises(ValueError, match="uses motion codes"):
        small_inverse(use_codes=True)(images, proprio)


def test_language_conditioned_bc_needs_the_task_text_and_uses_it():
    torch.manual_seed(0)
    bc = small_inverse(use_codes=False, text_dim=16).eval()
    images = torch.randint(0, 256, (1, 2, 3, 48, 48), dtype=torch.uint8).repeat(2, 1, 1, 1, 1)  # one scene twice
    proprio, text = torch.zeros(2, 7), torch.randn(2, 16)
    with pytest.raises(ValueError, match="task text"):
        bc(images, proprio)
    with torch.no_grad():
        a, _ = bc(images, proprio, text=text)
        b, _ = bc(images, proprio, text=text.flip(0))
    assert not torch.allclose(a[0], a[1])  # the same observation, two tasks: two chunks
    torch.testing.assert_close(a.flip(0), b)  # the chunk follows the text


def test_the_discount_weights_early_actions_more():
    model = small_inverse()
    mean = torch.zeros(1, 16, 7)
    log_std = torch.zeros(1, 16, 7)
    early, late = torch.zeros(1, 16, 7), torch.zeros(1, 16, 7)
    early[:, 0] = 3.0
    late[:, 15] = 3.0
    assert model.loss(mean, log_std, early) > model.loss(mean, log_std, late)
    assert model.discount[15].item() == pytest.approx(0.99 ** 15)


def test_bad_inputs_are_refused():
    tok = small_tokenizer(views=("front", "side"))
    with pytest.raises(ValueError, match=r"views=2.*\['front', 'side'\]"):
        tok.encode(torch.zeros(1, 3, 15, 100, 2))
    nan = torch.zeros(1, 2, 15, 100, 2)
    nan[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        tok.encode(nan)
    with pytest.raises(ValueError, match="codes must lie"):
        tok.decode_codes(torch.tensor([[1920] * 15]))
    fwd = small_forward()
    images, text, codes = batch_for_forward(n=1, views=3)
    with pytest.raises(ValueError, match="views=2"):
        fwd(images, text, codes)
    images, text, codes = batch_for_forward(n=1)
    with pytest.raises(ValueError, match="NaN"):
        fwd(images, text * float("nan"), codes)
    inv = small_inverse()
    with pytest.raises(ValueError, match="NaN"):
        inv(images, torch.full((1, 7), float("nan")), codes)


def test_point_subset_decoding_equals_full_decoding_and_trains_on_a_subset(real_tracks):
    torch.manual_seed(0)
    model = MotionTokenizer(TokenizerConfig(views=["front"], num_points=100, hidden=32, layers=1, heads=2,
                                            decoder_layers=1, dropout=0.0, train_points=10)).eval()
    vel = torch.from_numpy(velocities(real_tracks[0][:2])).unsqueeze(1)
    latents, _ = model.encode(vel)
    points = torch.tensor([3, 50, 99])
    torch.testing.assert_close(model.decode(latents, points), model.decode(latents)[:, :, :, points])
    labels = torch.from_numpy(real_tracks[1][:2].astype(np.int64)).unsqueeze(1)
    full = model(vel, labels)  # eval: all points
    model.train()
    torch.manual_seed(1)
    subset = model(vel, labels)
    assert torch.isfinite(subset) and not torch.isclose(subset, full)


def test_track_regressor_starts_at_the_grid_fits_a_batch_and_round_trips_a_checkpoint(real_tracks, tmp_path):
    from amplify_core.checkpoint import load_model, save_checkpoint
    from amplify_core.track_regression import TrackRegressor

    tracks = torch.from_numpy(real_tracks[0][:4]).unsqueeze(1)  # (4, 1 view, 16, 100, 2), from the 10x10 grid
    torch.manual_seed(0)
    c = small_forward().config
    model = TrackRegressor(c, num_views=1, num_points=100, horizon=16)
    images, text, _ = batch_for_forward(n=4, views=1, text_dim=c.text_dim)
    torch.testing.assert_close(model(images, text)[:, :, 0], model.grid.expand(4, 1, 100, 2))  # step 0 = the grid
    first, last = fit(model, lambda: model.loss(model(images, text), tracks), steps=150, lr=2e-3)
    assert last < 0.1 * first
    model.eval()
    save_checkpoint(tmp_path / "regressor.pt", model, meta={"views": ["front"]})
    loaded, meta = load_model(tmp_path / "regressor.pt", "regressor")
    with torch.no_grad():
        torch.testing.assert_close(loaded(images, text), model(images, text))
    assert meta["views"] == ["front"]


def test_tokenizer_loss_ignores_masked_labels():
    torch.manual_seed(0)
    tok = small_tokenizer().eval()
    vel = torch.randn(2, 1, 15, 100, 2) * 0.02
    labels = torch.randint(0, 225, (2, 1, 15, 100))
    mask = torch.rand(2, 1, 15, 100) > 0.5
    other = torch.where(mask, labels, torch.randint(0, 225, labels.shape))  # differs only where masked out
    with torch.no_grad():
        assert tok(vel, labels, mask).item() == pytest.approx(tok(vel, other, mask).item(), rel=1e-6)
        assert tok(vel, labels).item() != pytest.approx(tok(vel, other).item(), rel=1e-5)


@pytest.mark.parametrize("point_queries, step_head", [("coordinates", True), ("learned", False)])
def test_tokenizer_variants_overfit_and_decode_both_ways(real_tracks, point_queries, step_head):
    tracks, labels = real_tracks
    torch.manual_seed(0)
    tok = MotionTokenizer(TokenizerConfig(views=["front"], num_points=100, hidden=64, layers=2, heads=4,
                                          decoder_layers=1, dropout=0.0, point_queries=point_queries,
                                          step_head=step_head, train_points=50, moving_point_bias=4.0))
    vel = torch.from_numpy(velocities(tracks))[:, None]
    lab = torch.from_numpy(labels.astype(np.int64))[:, None]
    first, last = fit(tok, lambda: tok(vel, lab), steps=250, lr=3e-3)
    assert last < 0.3 * first
    tok.eval()
    with torch.no_grad():
        _, codes = tok(vel)
    for mode in ("expected", "argmax"):
        decoded = tok.codes_to_tracks(codes.numpy(), mode)  # (B, V, T, N, 2)
        assert decoded.shape == (4, 1, 16, 100, 2)
        assert delta_auc(decoded[:, 0, 1:], tracks[:, 1:]) > 0.8, mode
    single = tok.codes_to_tracks(codes[0].numpy())
    np.testing.assert_allclose(single, tok.codes_to_tracks(codes.numpy())[0], atol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        tok.codes_to_tracks(codes.numpy(), "mean")


def test_random_shift_moves_each_image_by_whole_pixels_within_the_pad():
    from amplify_core.vision import random_shift

    x = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).view(2, 3, 16, 16)
    y = random_shift(x, 2, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    for i in range(2):  # the interior of every shifted image is the original moved by some (dy, dx) in [-2, 2]
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(y[i, :, 4:12, 4:12], x[i, :, 4 + dy:12 + dy, 4 + dx:12 + dx])]
        assert len(found) == 1
    shifts = {tuple(random_shift(x, 2, generator=torch.Generator().manual_seed(s))[0, 0, 8, 8:10].tolist())
              for s in range(10)}
    assert len(shifts) > 2  # a different offset per draw


def test_vision_stages_set_the_token_grid_and_shift_only_in_training():
    from amplify_core.vision import MultiViewEncoder

    torch.manual_seed(0)
    cfg = VisionConfig(image_size=96, width=8, stages=3, random_shift=3)
    assert cfg.stride == 16 and cfg.tokens_per_view == 36
    enc = MultiViewEncoder(cfg, 2, 32)
    images = torch.randint(0, 256, (1, 2, 3, 96, 96), dtype=torch.uint8)
    assert enc(images).shape == (1, 72, 32)
    enc.eval()
    torch.testing.assert_close(enc(images), enc(images))  # no augmentation at inference
    enc.train()
    assert not torch.allclose(enc(images), enc(images))
    with pytest.raises(Exception, match="stages"):
        VisionConfig(stages=5)
