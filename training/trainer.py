"""The training loop shared by the three stages.

What a user of the field expects, in one place: seeding, AdamW with warm-up + cosine decay, gradient
accumulation, gradient clipping, mixed precision on CUDA (bf16 where supported, else fp16 with a scaler),
TensorBoard logs, a progress bar, atomic checkpoints every N steps, exact resume, and data-parallel
training over processes launched by ``torchrun`` (gloo on CPU, nccl on GPU).

Exact resume: the data order is a pure function of (seed, epoch, rank), so the position in the data is
recomputed from the optimizer step; the optimizer, scheduler, gradient scaler and every RNG are restored
from the checkpoint. An interrupted run continued with ``resume`` reproduces the losses of an
uninterrupted one (tested).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from amplify_core.checkpoint import CheckpointError, kind_of, model_args, read_checkpoint, save_checkpoint
from amplify_core.configs import TrainConfig

log = logging.getLogger(__name__)


def pick_device(requested: str | None = None) -> torch.device:
    """The requested device, else CUDA when present, else CPU (never hard-coded)."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Distributed:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def epoch_order(n: int, seed: int, epoch: int, rank: int, world: int) -> np.ndarray:
    """This rank's sample order for ``epoch``: a seeded permutation, split evenly across ranks."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    per_rank = n // world
    return perm[rank * per_rank:(rank + 1) * per_rank]


def lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)  # one per optimizer step run in this call
    step: int = 0
    checkpoint: Path | None = None


def resumable_state(path: Path, model: torch.nn.Module) -> dict:
    """The training state in ``path`` if it continues THIS model: same kind, config and constructor arguments.

    Raises CheckpointError naming the file and every difference (a changed config would otherwise surface as a
    raw state-dict size mismatch), so the user can delete it or pick another run directory."""
    payload = read_checkpoint(path)
    hint = "delete it to start over, or use another --run-dir"
    if payload["kind"] != kind_of(model):
        raise CheckpointError(f"checkpoint {path}: is the training state of a {payload['kind']!r} model, this run "
                              f"trains a {kind_of(model)!r} model; {hint}")
    if payload.get("train_state") is None:
        raise CheckpointError(f"checkpoint {path}: has no training state (a final checkpoint?); {hint}")
    ours = {**{f"config.{k}": v for k, v in dataclasses.asdict(model.config).items()},
            **{f"model_args.{k}": v for k, v in model_args(model).items()}}
    theirs = {**{f"config.{k}": v for k, v in payload["config"].items()},
              **{f"model_args.{k}": v for k, v in payload["model_args"].items()}}
    changed = [f"{k}: {_short(theirs.get(k))} -> {_short(ours.get(k))}" for k in sorted(set(ours) | set(theirs))
               if _plain(ours.get(k)) != _plain(theirs.get(k))]
    if changed:
        raise CheckpointError(f"checkpoint {path}: was made with another configuration ({'; '.join(changed)}); "
                              f"{hint}")
    return payload


def _plain(v):
    """Tuples and lists compare equal (a config loaded from YAML has lists, a dataclass default may have tuples)."""
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def train(
    name: str,
    model: torch.nn.Module,
    dataset: Dataset,
    loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor],
    cfg: TrainConfig,
    run_dir: str | Path,
    meta: dict | None = None,
    device: str | torch.device | None = None,
    resume: bool = True,
    stop_after: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` on ``dataset`` and write ``run_dir/<name>.pt`` (weights + config + meta).

    ``run_dir/checkpoints/<name>_last.pt`` holds the full training state; with ``resume`` a run continues
    from it. ``stop_after`` ends this call after that many optimizer steps (a time budget, or a test of
    resume), leaving the training checkpoint behind.
    """
    run_dir = Path(run_dir)
    device = pick_device(str(device) if device else None)
    ddp = init_distributed(device)
    if device.type == "cuda":
        device = torch.device("cuda", ddp.local_rank)
    seed_everything(cfg.seed + ddp.rank)
    model = model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    state_path = run_dir / "checkpoints" / f"{name}_last.pt"
    step = 0
    if resume and state_path.is_file():
        payload = resumable_state(state_path, model)
        model.load_state_dict(payload["model"])
        ts = payload["train_state"]
        optimizer.load_state_dict(ts["optimizer"])
        scheduler.load_state_dict(ts["scheduler"])
        scaler.load_state_dict(ts["scaler"])
        _set_rng_state(ts["rng"][min(ddp.rank, len(ts["rng"]) - 1)])
        step = ts["step"]
        if ddp.main:
            log.info("%s: resuming from step %d (%s)", name, step, state_path)

    wrapped = model
    if ddp.world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    per_rank = len(dataset) // ddp.world
    batches_per_epoch = per_rank // cfg.batch_size
    if batches_per_epoch < 1:
        raise ValueError(f"{name}: {len(dataset)} samples over {ddp.world} process(es) do not fill one batch of "
                         f"{cfg.batch_size}; lower train.batch_size or add data")

    def batches_from(micro: int):
        """Yield (batch) from global micro-batch index ``micro`` on, forever, deterministically."""
        epoch, offset = divmod(micro, batches_per_epoch)
        while True:
            order = epoch_order(len(dataset), cfg.seed, epoch, ddp.rank, ddp.world)
            plan = [order[i * cfg.batch_size:(i + 1) * cfg.batch_size].tolist()
                    for i in range(offset, batches_per_epoch)]
            # a private generator: creating the loader must not draw from the global RNG (dropout)
            loader_rng = torch.Generator().manual_seed(cfg.seed * 1000003 + epoch)
            yield from DataLoader(dataset, batch_sampler=plan, num_workers=cfg.num_workers, generator=loader_rng)
            epoch, offset = epoch + 1, 0

    writer = None
    if ddp.main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tensorboard" / name))
    result = TrainResult(step=step)
    end = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    data = batches_from(step * cfg.grad_accumulation)
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {name}", unit="step",
               disable=not (progress and ddp.main), dynamic_ncols=True)

    def save_state():
        if ddp.main:
            save_checkpoint(state_path, model, meta, train_state={
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "step": step, "rng": _gather_rng(ddp)})
        elif ddp.world > 1:
            _gather_rng(ddp)

    model.train()
    started = time.perf_counter()
    while step < end:
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(cfg.grad_accumulation):
            batch = {k: v.to(device, non_blocking=True) for k, v in next(data).items()}
            sync = micro == cfg.grad_accumulation - 1 or ddp.world == 1
            ctx = wrapped.no_sync() if (ddp.world > 1 and not sync) else _null()
            with ctx, torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                loss = loss_fn(wrapped, batch) / cfg.grad_accumulation
            scaler.scale(loss).backward()
            total += loss.item()
        if not math.isfinite(total):
            raise FloatingPointError(f"{name}: loss became {total} at step {step}; check the data and lr")
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        step += 1
        result.losses.append(total)
        bar.update(1)
        bar.set_postfix(loss=f"{total:.4f}")
        if writer and (step % cfg.log_every == 0 or step == end):
            writer.add_scalar(f"{name}/loss", total, step)
            writer.add_scalar(f"{name}/lr", scheduler.get_last_lr()[0], step)
        if step % cfg.checkpoint_every == 0 or step == end:
            save_state()
    bar.close()
    if writer:
        writer.close()
    result.step = step
    if step >= cfg.steps and ddp.main:
        result.checkpoint = save_checkpoint(run_dir / f"{name}.pt", model, meta)
        log.info("%s: %d steps in %.0f s -> %s", name, step, time.perf_counter() - started, result.checkpoint)
    if ddp.world > 1:
        dist.barrier()
    return result


def _gather_rng(ddp: Distributed) -> list:
    """Every rank's RNG state (rank 0 stores them all, so each rank resumes its own dropout stream)."""
    state = _rng_state()
    if ddp.world == 1:
        return [state]
    states = [None] * ddp.world
    dist.all_gather_object(states, state)
    return states


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
