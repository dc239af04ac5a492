"""The main job's health checks: one figure per stage, so that a regression shows at once where it starts.

* tracks: label statistics (how much of the motion the local-window labels see) and the tracker against the
  simulator's ground truth;
* tokenizer: reconstruction of held-out moving points against the no-motion floor, code use, and whether the
  decoder reads its codes (cross-entropy with the true codes against shuffled ones);
* forward: agreement of the predicted codes with the tokenizer's codes of held-out frames, per task;
* inverse: open-loop error of the first action and of the whole chunk, per action dimension, on held-out demos.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ACTION_NAMES = ("x", "y", "z", "rx", "ry", "rz", "gripper")


def _track_shard(job: tuple) -> dict:
    store, tracker, shard, shards = job
    if tracker == "ground_truth":
        from amplify_core.workcell.ground_truth import preprocess_store_ground_truth

        return preprocess_store_ground_truth(store, shard=shard, num_shards=shards).failed
    import cv2

    from amplify_core.preprocessing import preprocess_store
    from amplify_core.tracking import LucasKanadeTracker

    cv2.setNumThreads(1)
    return preprocess_store(store, LucasKanadeTracker(), shard=shard, num_shards=shards).failed


def track_stores(stores, tracker: str, workers: int) -> dict:
    """Tracks of every episode of ``stores`` (resumable: finished sidecars are kept), ``workers`` shards at a time.
    Returns the failures, episode -> reason."""
    jobs = [(str(store), tracker, i, workers) for store in stores for i in range(workers)]
    failed = {}
    if workers == 1:
        results = map(_track_shard, jobs)
    else:
        pool = mp.get_context("spawn").Pool(workers)
        results = pool.imap_unordered(_track_shard, jobs)
    from tqdm import tqdm

    for out in tqdm(results, total=len(jobs), desc="tracks (store shards)", unit="shard"):
        failed.update(out)
    if workers != 1:
        pool.close()
        pool.join()
    return failed


def label_report(stores, views=("front", "side", "corner")) -> dict:
    """The figures of ``amplify_core.tracks.label_statistics``, pooled over every episode of ``stores``."""
    from amplify_core.datasets import load_episodes
    from amplify_core.tracks import MOVING_THRESHOLD_PX, NUM_CLASSES, label_parts

    centre, trusted, moving_steps, moving_labels = 0, 0, [], []
    for ep in load_episodes(stores, list(views), images=False, tracks=True):
        n_trusted, n_centre, steps, labels = label_parts(ep.tracks, ep.visible, ep.labels)
        trusted += n_trusted
        centre += n_centre
        moving_steps.append(steps)
        moving_labels.append(labels)
    steps, labels = np.concatenate(moving_steps), np.concatenate(moving_labels)
    return {"trusted_labels": trusted, "centre_fraction": centre / max(1, trusted),
            "moving_fraction": len(labels) / max(1, trusted),
            "moving_median_step_px": float(np.median(steps)) if len(steps) else float("nan"),
            "moving_not_centre_fraction": float(np.mean(labels != NUM_CLASSES // 2)) if len(labels) else float("nan"),
            "moving_threshold_px": MOVING_THRESHOLD_PX}


def tracker_accuracy(store: Path, max_episodes: int) -> dict:
    """Lucas-Kanade against the simulator's ground truth on the first ``max_episodes`` episodes of ``store``
    (``amplify-workcell-track-accuracy``), half robot, half human."""
    import tempfile

    from amplify_core.episodes import list_episodes
    from training.workcell_track_accuracy import main as accuracy

    paths = list_episodes(store)
    robot = [p for p in paths if p.name.startswith("robot_")][: (max_episodes + 1) // 2]
    human = [p for p in paths if p.name.startswith("human_")][: max_episodes // 2]
    out = {}
    for name, chosen in (("robot", robot), ("human", human)):
        if not chosen:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            for p in chosen:
                (Path(tmp) / p.name).symlink_to(p.resolve())
            report = Path(tmp) / "accuracy.json"
            if accuracy([tmp, "--json", str(report)]) != 0:
                raise RuntimeError(f"tracker accuracy on {store} failed")
            out[name] = json.loads(report.read_text())
    return out


@torch.no_grad()
def tokenizer_health(tokenizer_path: Path, stores, every: int = 2) -> dict:
    """Reconstruction of held-out tracks by the tokenizer (its own codes decoded, expected and argmax displacement)
    against the no-motion floor, on visible steps of all and of moving points; code use; the decoder's
    cross-entropy on moving points with the true codes and with codes of other windows."""
    from amplify_core.checkpoint import load_model
    from amplify_core.datasets import encode_codes, load_episodes
    from amplify_core.metrics import track_metrics
    from amplify_core.tracks import label_mask, moving_points

    tokenizer, meta = load_model(tokenizer_path, "tokenizer")
    episodes = load_episodes(stores, meta["views"], images=False, tracks=True)
    codes = encode_codes(tokenizer, episodes)
    every_code = np.concatenate(codes)
    rng = np.random.default_rng(0)
    preds = {"expected": [], "argmax": [], "no_motion": []}
    refs, visible, moving, ce = [], [], [], {"true": [], "shuffled": []}
    for ep, c in zip(episodes, codes):
        frames = list(range(0, ep.num_frames, every))
        ref, vis = ep.tracks[frames], ep.visible[frames]
        for mode in ("expected", "argmax"):
            preds[mode].append(tokenizer.codes_to_tracks(c[frames], mode)[:, :, 1:])
        preds["no_motion"].append(np.broadcast_to(ref[:, :, :1], ref.shape)[:, :, 1:])
        refs.append(ref[:, :, 1:])
        visible.append(vis[:, :, 1:])
        moving.append(np.broadcast_to(moving_points(ref, vis)[:, :, None], vis[:, :, 1:].shape))
        labels = torch.from_numpy(ep.labels[frames].astype(np.int64))
        trusted = torch.from_numpy(label_mask(vis) & moving[-1])
        for which, cc in (("true", c[frames]), ("shuffled", every_code[rng.integers(0, len(every_code), len(frames))])):
            logits = tokenizer.decode_codes(torch.from_numpy(cc))
            loss = F.cross_entropy(logits.flatten(0, -2), labels.flatten(), reduction="none").view(labels.shape)
            ce[which].append(loss[trusted].numpy())
    ref, vis = np.concatenate(refs), np.concatenate(visible)
    mov = np.concatenate(moving) & vis
    out = {"frames": int(sum(len(r) for r in refs)), "moving_fraction": float(mov.sum() / max(1, vis.sum()))}
    for method, parts in preds.items():
        p = np.concatenate(parts)
        out[method] = {"all": track_metrics(p[vis][:, None], ref[vis][:, None]),
                       "moving": track_metrics(p[mov][:, None], ref[mov][:, None]) if mov.any() else None}
    used, counts = np.unique(every_code, return_counts=True)
    probs = counts / counts.sum()
    out["codes"] = {"distinct": int(len(used)), "codebook": int(tokenizer.config.codebook_size),
                    "perplexity": float(np.exp(-(probs * np.log(probs)).sum())), "windows": int(len(every_code))}
    out["moving_ce"] = {k: float(np.concatenate(v).mean()) if v else float("nan") for k, v in ce.items()}
    return out


@torch.no_grad()
def forward_agreement(tokenizer_path: Path, forward_path: Path, text_cache: Path, stores, every: int = 2) -> dict:
    """Per task: the fraction of code positions where the forward model's greedy codes equal the tokenizer's codes
    of held-out frames (robot and human), and the fraction of whole sequences that match."""
    from amplify_core.checkpoint import load_model
    from amplify_core.datasets import encode_codes, load_episodes
    from amplify_core.text import TextEmbeddingCache

    tokenizer, meta = load_model(tokenizer_path, "tokenizer")
    forward, fwd_meta = load_model(forward_path, "forward")
    texts = TextEmbeddingCache(text_cache, fwd_meta["text_encoder"], fwd_meta.get("t5_path"))
    episodes = load_episodes(stores, meta["views"], images=True, tracks=True)
    codes = encode_codes(tokenizer, episodes)
    per_task: dict = {}
    for ep, c in zip(episodes, codes):
        frames = list(range(0, ep.num_frames, every))
        text = torch.from_numpy(np.repeat(texts([ep.task]), len(frames), axis=0))
        pred = forward.generate(torch.from_numpy(ep.frames[frames]), text).numpy()
        row = per_task.setdefault(f"{ep.task} ({ep.embodiment})", [0, 0])
        row[0] += int((pred == c[frames]).sum())
        row[1] += int(pred.size)
    return {task: {"code_agreement": k / n, "codes": n} for task, (k, n) in sorted(per_task.items())}


@torch.no_grad()
def inverse_open_loop(inverse_path: Path, forward_path: Path | None, text_cache: Path, stores, tasks: list[str],
                      every: int = 2) -> dict:
    """Mean absolute error of the first action and of the whole chunk, per action dimension (m, rad, gripper
    0..1), of a policy on the held-out robot demos of ``tasks``, fed the demo's own observations (open loop): with
    the forward model's codes for AMPLIFY, as when it runs."""
    from amplify_core.datasets import load_episodes
    from amplify_core.policy import AmplifyPolicy

    policy = AmplifyPolicy(inverse_path, forward_path, text_cache=text_cache)
    episodes = [e for e in load_episodes(stores, policy.views, images=True, tracks=False, skip_bad=True)
                if e.actions is not None and e.task in tasks]
    if not episodes:
        raise RuntimeError(f"no held-out robot demos of {tasks} in {[str(s) for s in stores]}")
    first, chunk = [], []
    for ep in episodes:
        frames = list(range(0, ep.num_frames, every))
        images = [{v: ep.frames[t][i].transpose(1, 2, 0) for i, v in enumerate(policy.views)} for t in frames]
        pred = policy.predict_chunks(images, [ep.state[t] for t in frames], [ep.task] * len(frames))
        for j, t in enumerate(frames):
            steps = np.minimum(np.arange(t, t + pred.shape[1]), ep.num_frames - 1)
            first.append(np.abs(pred[j, 0] - ep.actions[t]))
            chunk.append(np.abs(pred[j] - ep.actions[steps]).mean(0))
    first, chunk = np.array(first), np.array(chunk)
    return {"samples": len(first),
            "first_action": dict(zip(ACTION_NAMES, first.mean(0).tolist())),
            "chunk": dict(zip(ACTION_NAMES, chunk.mean(0).tolist())),
            "first_action_position_norm": float(np.linalg.norm(first[:, :3], axis=1).mean())}

