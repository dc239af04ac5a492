"""The three training stages as functions (the command-line programs are thin wrappers around them).

Stage 1, tokenizer: tracks of every episode (robot and human) -> MotionTokenizer.
Stage 2, forward: images + task text of every episode, codes from the frozen tokenizer -> ForwardDynamics.
Stage 3, inverse: robot episodes with actions (demos, and play without task text), codes from the tokenizer (or,
with ``finetune_steps``, then from the frozen forward model for the episodes with a task text, as the paper's
fine-tuning) -> InverseDynamics; ``use_codes=False`` trains the inverse-only BC baseline on the same data.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from amplify_core.checkpoint import load_model, read_checkpoint
from amplify_core.configs import ConfigError, ModelsConfig, TrainConfig
from amplify_core.datasets import ForwardSamples, InverseSamples, TrackSamples, TrackWindows, encode_codes, load_episodes
from amplify_core.episodes import EpisodeError
from amplify_core.forward_dynamics import ForwardDynamics
from amplify_core.inverse_dynamics import InverseDynamics
from amplify_core.normalization import Normalizer
from amplify_core.text import TextEmbeddingCache
from amplify_core.tokenizer import MotionTokenizer
from amplify_core.track_regression import TrackRegressor

from .trainer import pick_device, seed_everything, train

log = logging.getLogger(__name__)


def _train_cfg(cfg: TrainConfig, steps: int | None) -> TrainConfig:
    """The stage's training settings with ``steps`` (when given: a positive count) in place of the config's."""
    if steps is None:
        return cfg
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"--steps {steps!r}: must be a positive number of optimizer steps")
    return dataclasses.replace(cfg, steps=steps)


def train_tokenizer(config: ModelsConfig, stores, run_dir, steps=None, device=None, stop_after=None,
                    progress=True):
    views = config.tokenizer.views
    episodes = load_episodes(stores, views, images=False, tracks=True)
    log.info("tokenizer: %d episodes, %d windows", len(episodes), sum(e.num_frames for e in episodes))
    seed_everything(config.train_tokenizer.seed)  # same initial weights for the same seed
    model = MotionTokenizer(config.tokenizer)
    meta = {"views": views, "stores": [str(s) for s in stores]}
    return train("tokenizer", model, TrackWindows(episodes),
                 lambda m, b: m(b["velocities"], b["labels"], b["mask"]),
                 _train_cfg(config.train_tokenizer, steps), run_dir, meta, device, stop_after=stop_after,
                 progress=progress)


def _module(m):
    return getattr(m, "module", m)


def _text_table(episodes, run_dir: Path, text_encoder: str, t5_path: str | None) -> dict:
    cache = TextEmbeddingCache(Path(run_dir) / "text_embeddings.npz", text_encoder, t5_path)
    tasks = sorted({e.task for e in episodes})
    return dict(zip(tasks, cache(tasks)))


def _image_shape(episodes) -> list[int]:
    shapes = {tuple(e.frames.shape[2:]) for e in episodes}  # (3, H, W) of every view
    if len(shapes) != 1:
        raise EpisodeError(f"episodes have different image shapes {sorted(shapes)}; use one camera resolution")
    return list(shapes.pop())


def train_forward(config: ModelsConfig, stores, run_dir, tokenizer_path, steps=None, device=None,
                  text_encoder="minilm", t5_path=None, stop_after=None, progress=True, name="forward"):
    tokenizer, tok_meta = load_model(tokenizer_path, "tokenizer")
    views = tok_meta["views"]
    episodes = load_episodes(stores, views, images=True, tracks=True)
    codes = encode_codes(tokenizer, episodes, device=pick_device(device))
    texts = _text_table(episodes, run_dir, text_encoder, t5_path)
    text_dim = len(next(iter(texts.values())))
    if text_dim != config.forward.text_dim:
        raise ConfigError(f"forward.text_dim is {config.forward.text_dim} but the {text_encoder} encoder gives "
                         f"{text_dim}-d embeddings")
    seed_everything(config.train_forward.seed)
    model = ForwardDynamics(config.forward, len(views), tokenizer.config.codebook_size, tokenizer.config.code_length)
    meta = {"views": views, "image_shape": _image_shape(episodes), "text_encoder": text_encoder,
            "t5_path": t5_path, "tokenizer": str(tokenizer_path),
            "embodiments": sorted({e.embodiment for e in episodes}), "tasks": sorted(texts)}
    log.info("forward: %d episodes (%s), %d samples", len(episodes), meta["embodiments"],
             sum(e.num_frames for e in episodes))
    return train(name, model, ForwardSamples(episodes, codes, texts),
                 lambda m, b: ForwardDynamics.loss(m(b["images"], b["text"], b["codes"]), b["codes"]),
                 _train_cfg(config.train_forward, steps), run_dir, meta, device, stop_after=stop_after,
                 progress=progress)


def train_regressor(config: ModelsConfig, stores, run_dir, steps=None, device=None, text_encoder="minilm",
                    t5_path=None, progress=True):
    """The paper's MSE ablation: the forward network's conditioning regressing tracks directly (no codes).
    Trained with the forward stage's settings on the same episodes."""
    views = config.tokenizer.views
    episodes = load_episodes(stores, views, images=True, tracks=True)
    texts = _text_table(episodes, run_dir, text_encoder, t5_path)
    seed_everything(config.train_forward.seed)
    model = TrackRegressor(config.forward, len(views), config.tokenizer.num_points, config.tokenizer.horizon)
    meta = {"views": views, "image_shape": _image_shape(episodes), "text_encoder": text_encoder, "t5_path": t5_path,
            "embodiments": sorted({e.embodiment for e in episodes}), "tasks": sorted(texts)}
    log.info("regressor: %d episodes, %d samples", len(episodes), sum(e.num_frames for e in episodes))
    return train("regressor", model, TrackSamples(episodes, texts),
                 lambda m, b: TrackRegressor.loss(m(b["images"], b["text"]), b["tracks"], b["visible"]),
                 _train_cfg(config.train_forward, steps), run_dir, meta, device, progress=progress)


@torch.no_grad()
def predicted_codes(forward_path, episodes, run_dir, device=None, batch=64) -> list[np.ndarray]:
    """Codes the frozen forward model predicts for every frame (targets of the fine-tuning stage)."""
    model, meta = load_model(forward_path, "forward", pick_device(device))
    texts = _text_table(episodes, run_dir, meta["text_encoder"], meta.get("t5_path"))
    dev = next(model.parameters()).device
    out = []
    for ep in episodes:
        text = torch.from_numpy(np.stack([texts[ep.task]] * batch)).to(dev)
        codes = [model.generate(torch.from_numpy(ep.frames[i:i + batch]).to(dev), text[: len(ep.frames[i:i + batch])])
                 for i in range(0, ep.num_frames, batch)]
        out.append(torch.cat(codes).cpu().numpy())
    return out


def _check_finetuning(forward_path, finetune_steps, use_codes, tokenizer_path) -> None:
    """Everything the fine-tuning stage needs, checked BEFORE the inverse training it follows runs."""
    if isinstance(finetune_steps, bool) or not isinstance(finetune_steps, int) or finetune_steps < 0:
        raise ConfigError(f"--finetune-steps {finetune_steps!r}: must be 0 (no fine-tuning) or a positive count")
    if finetune_steps and not use_codes:
        raise ConfigError("--finetune-steps fine-tunes on the forward model's codes; the BC baseline (--no-codes) "
                          "has none")
    if finetune_steps and forward_path is None:
        raise ConfigError(f"--finetune-steps {finetune_steps} needs --forward (the model whose codes it trains on)")
    if forward_path is None or not use_codes:
        return
    forward = read_checkpoint(forward_path, "forward")
    tokenizer = load_model(tokenizer_path, "tokenizer")[0].config
    ours = (tokenizer.codebook_size, tokenizer.code_length)
    theirs = (forward["model_args"]["codebook_size"], forward["model_args"]["code_length"])
    if ours != theirs:
        raise ConfigError(f"--forward {forward_path}: predicts codes of (codebook, length) {theirs}, the tokenizer "
                          f"{tokenizer_path} makes {ours}; train both from the same tokenizer")


def train_inverse(config: ModelsConfig, stores, run_dir, tokenizer_path=None, forward_path=None, steps=None,
                  finetune_steps=0, use_codes=True, device=None, name="inverse", stop_after=None, progress=True,
                  task_text=False, text_encoder="minilm", t5_path=None, demo_share=None):
    """``task_text``: condition on the task-text embedding too (with ``use_codes=False``: language-conditioned
    BC); the embedding width follows the text encoder. ``demo_share``: demos (episodes with a task text) make up at
    least this share of the samples when mixed with play (see :class:`~amplify_core.datasets.InverseSamples`)."""
    inv_cfg = dataclasses.replace(config.inverse, use_codes=use_codes)
    if use_codes and tokenizer_path is None:
        raise ConfigError("an inverse model with codes needs --tokenizer (or pass --no-codes for the BC baseline)")
    train_cfg = _train_cfg(config.train_inverse, steps)
    _check_finetuning(forward_path, finetune_steps, use_codes, tokenizer_path)
    views = load_model(tokenizer_path, "tokenizer")[1]["views"] if tokenizer_path else config.tokenizer.views
    episodes = load_episodes(stores, views, images=True, tracks=use_codes, need_actions=True)
    proprio_norm = Normalizer.fit(np.concatenate([e.state for e in episodes]))
    action_norm = Normalizer.fit(np.concatenate([e.actions for e in episodes]))
    if proprio_norm.dim != inv_cfg.proprio_dim or action_norm.dim != inv_cfg.action_dim:
        raise ConfigError(f"data has proprio {proprio_norm.dim} / actions {action_norm.dim} dims, the config "
                         f"expects {inv_cfg.proprio_dim} / {inv_cfg.action_dim}")
    codes = None
    codebook, code_length = config.tokenizer.codebook_size, config.tokenizer.code_length
    if use_codes:
        tokenizer, _ = load_model(tokenizer_path, "tokenizer")
        codebook, code_length = tokenizer.config.codebook_size, tokenizer.config.code_length
        codes = encode_codes(tokenizer, episodes, device=pick_device(device))
    texts = _text_table(episodes, run_dir, text_encoder, t5_path) if task_text else None
    if texts:
        inv_cfg = dataclasses.replace(inv_cfg, text_dim=len(next(iter(texts.values()))))
    seed_everything(config.train_inverse.seed)
    model = InverseDynamics(inv_cfg, len(views), codebook, code_length)
    meta = {"views": views, "image_shape": _image_shape(episodes), "proprio_norm": proprio_norm.to_dict(),
            "action_norm": action_norm.to_dict(), "tokenizer": str(tokenizer_path), "use_codes": use_codes,
            "forward": str(forward_path) if forward_path else None,
            "codes_from": "tokenizer" if use_codes else None, "stores": [str(p) for p in stores]}
    if texts:
        meta.update(text_encoder=text_encoder, t5_path=t5_path, tasks=sorted(texts))
    loss = lambda m, b: _module(m).loss(*m(b["images"], b["proprio"], b.get("codes"), b.get("text")),  # noqa: E731
                                        b["actions"])
    dataset = InverseSamples(episodes, codes, proprio_norm, action_norm, inv_cfg.chunk, texts, demo_share)
    meta["demo_share"], meta["demo_repeats"] = round(dataset.demo_fraction, 4), dataset.demo_repeats
    log.info("%s: %d robot episodes, %d frames, codes=%s; demos %.0f %% of the samples (each demo frame x%d)", name,
             len(episodes), sum(e.num_frames for e in episodes), use_codes, 100 * dataset.demo_fraction,
             dataset.demo_repeats)
    result = train(name, model, dataset, loss, train_cfg, run_dir, meta, device,
                   stop_after=stop_after, progress=progress)
    if use_codes and forward_path and finetune_steps and result.checkpoint is not None:
        # paper Sec. 3.4: fine-tune on the codes the (frozen) forward model predicts. Play (no task text) has no
        # instruction to predict from, and at test time the forward model always has one: it keeps its own codes
        with_text = [i for i, e in enumerate(episodes) if e.task]
        predicted = predicted_codes(forward_path, [episodes[i] for i in with_text], run_dir, device)
        dataset.codes = list(codes)
        for i, c in zip(with_text, predicted):
            dataset.codes[i] = c
        finetune_cfg = dataclasses.replace(config.train_inverse, steps=finetune_steps, warmup_steps=0,
                                           lr=config.train_inverse.lr * 0.3)
        model.load_state_dict(load_model(result.checkpoint, "inverse")[0].state_dict())
        result = train(f"{name}_finetuned", model, dataset, loss, finetune_cfg, run_dir,
                       {**meta, "codes_from": "forward"}, device, progress=progress)
    return result
