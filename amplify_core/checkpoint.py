"""Checkpoints that fully describe their model: kind, config, constructor arguments, statistics, weights.

A checkpoint is a ``torch.save`` dict::

    format: "amplify_ros"       version: 1         kind: tokenizer | forward | inverse | regressor
    config: the stage's config as a dict           model_args: views, codebook_size, code_length
    meta: anything the runtime needs (normalisation statistics, text encoder, image size, ...)
    model: state dict             train_state: optimizer/scheduler/RNG/step (training checkpoints only)

Loading rebuilds the model from the stored config and refuses a wrong or damaged file with a message that
names the file and what does not match.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .atomic_files import atomic_output
from .configs import ForwardConfig, InverseConfig, TokenizerConfig, from_dict
from .forward_dynamics import ForwardDynamics
from .inverse_dynamics import InverseDynamics
from .tokenizer import MotionTokenizer
from .track_regression import TrackRegressor

FORMAT, VERSION = "amplify_ros", 1
KINDS = ("tokenizer", "forward", "inverse", "regressor")


class CheckpointError(ValueError):
    """The file is not a usable checkpoint of the expected kind."""


def build_model(kind: str, config: dict, model_args: dict) -> torch.nn.Module:
    if kind == "tokenizer":
        return MotionTokenizer(from_dict(TokenizerConfig, config, "tokenizer config"))
    if kind == "forward":
        return ForwardDynamics(from_dict(ForwardConfig, config, "forward config"), **model_args)
    if kind == "inverse":
        return InverseDynamics(from_dict(InverseConfig, config, "inverse config"), **model_args)
    if kind == "regressor":
        return TrackRegressor(from_dict(ForwardConfig, config, "regressor config"), **model_args)
    raise CheckpointError(f"unknown model kind {kind!r}; expected one of {KINDS}")


def model_args(model: torch.nn.Module) -> dict:
    if isinstance(model, MotionTokenizer):
        return {}
    if isinstance(model, TrackRegressor):
        return {"num_views": model.num_views, "num_points": model.num_points, "horizon": model.horizon}
    return {"num_views": model.num_views, "codebook_size": model.codebook_size, "code_length": model.code_length}


def kind_of(model: torch.nn.Module) -> str:
    for kind, cls in zip(KINDS, (MotionTokenizer, ForwardDynamics, InverseDynamics, TrackRegressor)):
        if isinstance(model, cls):
            return kind
    raise CheckpointError(f"cannot checkpoint a {type(model).__name__}")


def save_checkpoint(path: str | Path, model: torch.nn.Module, meta: dict | None = None,
                    train_state: dict | None = None) -> Path:
    """Write atomically (temporary file renamed into place)."""
    import dataclasses

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    payload = {
        "format": FORMAT, "version": VERSION, "kind": kind_of(model),
        "config": dataclasses.asdict(model.config), "model_args": model_args(model),
        "meta": meta or {}, "model": model.state_dict(), "train_state": train_state,
    }
    with atomic_output(path, overwrite=True) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | Path, expected_kind: str | None = None) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path}: no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path}: unreadable ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not an amplify_ros checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path}: version {payload.get('version')} is not supported "
                              f"(this code reads version {VERSION})")
    if expected_kind is not None and payload["kind"] != expected_kind:
        raise CheckpointError(f"checkpoint {path}: is a {payload['kind']!r} checkpoint, expected {expected_kind!r}")
    return payload


def load_model(path: str | Path, expected_kind: str | None = None,
               device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the model stored in ``path``; returns (model in eval mode, meta)."""
    payload = read_checkpoint(path, expected_kind)
    model = build_model(payload["kind"], payload["config"], payload["model_args"])
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path}: weights do not match the stored config ({exc})") from exc
    return model.to(device).eval(), payload["meta"]
