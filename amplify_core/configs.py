"""Configuration of the three AMPLIFY models and their training, as dataclasses loaded from YAML.

Two presets ship in ``config/models/``: ``paper`` (Table 10 of the paper: hidden 768; 2 / 8 / 4 layers;
~31M / ~70M / ~57M parameters) and ``tiny`` (trains in minutes on 2 CPU cores). A checkpoint stores the
config it was trained with, so a model is always rebuilt exactly (see ``amplify_core.checkpoint``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from .package_files import package_folder
from .tracks import GRID_SIZE, HORIZON, NUM_CLASSES


class ConfigError(ValueError):
    """A configuration value is impossible; the message names the field and the rule."""


@dataclass
class TokenizerConfig:
    """Motion tokenizer (paper Sec. 3.2): causal encoder -> FSQ codes -> point-query decoder.

    Args:
        views: camera views tokenized together; the velocities of all views at a step form one token.
        view_weights: loss weight per view (same order as ``views``); the authors weight a main view 0.9.
        num_points: N, keypoints per view (20x20 grid).
        horizon: T, track length; the code sequence has T-1 entries (one per velocity step).
        hidden: transformer width. layers / heads: encoder depth and attention heads.
        decoder_layers: cross-attention layers of the decoder.
        fsq_levels: FSQ levels per latent dimension; the codebook size is their product (1920).
        num_classes: local-window classes (15 x 15).
        dropout: dropout in attention and MLP blocks.
        train_points: grid points per view (sampled anew each step) whose logits enter the training
            loss; None or num_points = all. Evaluation always decodes every point.
        point_queries: the decoder's query of each grid point. ``learned``: a free vector per point (the authors'
            form; each one learns only from the steps it is sampled in). ``coordinates``: a small MLP of the point's
            image position (Fourier features), so neighbouring points share what they learn; measured here it
            reconstructs moving points far better in the same steps.
        step_head: the decoder's output layer. False: one linear map from a point's decoded vector to the logits
            of all T-1 steps at once (a point's whole future must fit one vector). True: the logits of step k come
            from the point's vector joined with code k's own projection, so each step reads its code directly.
        moving_point_bias: with ``train_points``, how much more often a point that moves in the batch is drawn
            into the loss (0 = uniform). The static table, most of the grid, is learnt in a few hundred steps.
    """

    views: list[str] = field(default_factory=lambda: ["front", "side", "corner"])
    view_weights: list[float] | None = None
    num_points: int = GRID_SIZE * GRID_SIZE
    horizon: int = HORIZON
    hidden: int = 768
    layers: int = 2
    heads: int = 8
    decoder_layers: int = 2
    fsq_levels: list[int] = field(default_factory=lambda: [8, 8, 6, 5])
    num_classes: int = NUM_CLASSES
    dropout: float = 0.1
    train_points: int | None = None
    point_queries: str = "learned"
    step_head: bool = False
    moving_point_bias: float = 0.0

    def __post_init__(self):
        _check_width(self.hidden, self.heads, "tokenizer")
        if self.moving_point_bias < 0:
            raise ConfigError(f"tokenizer.moving_point_bias must be >= 0, got {self.moving_point_bias}")
        if self.point_queries not in ("learned", "coordinates"):
            raise ConfigError(f"tokenizer.point_queries must be 'learned' or 'coordinates', got {self.point_queries!r}")
        if self.train_points is not None and not 1 <= self.train_points <= self.num_points:
            raise ConfigError(f"tokenizer.train_points must be in [1, {self.num_points}], got {self.train_points}")
        if not self.views:
            raise ConfigError("tokenizer.views must name at least one view")
        if self.view_weights is not None and len(self.view_weights) != len(self.views):
            raise ConfigError(f"tokenizer.view_weights has {len(self.view_weights)} entries for "
                              f"{len(self.views)} views {self.views}")

    @property
    def codebook_size(self) -> int:
        size = 1
        for level in self.fsq_levels:
            size *= level
        return size

    @property
    def code_length(self) -> int:
        return self.horizon - 1


@dataclass
class VisionConfig:
    """ResNet-18 image encoder whose last feature map becomes patch tokens.

    Args:
        image_size: images are resized to this side before the encoder (224 -> 7x7 = 49 tokens per view,
            as the authors; 128 -> 4x4 = 16 tokens).
        width: channels of the first stage (64 is the standard ResNet-18; 32 quarters the cost).
        weights: optional local path of torchvision-format ResNet-18 weights (only with width 64).
        frozen: keep the encoder fixed during training (sensible with pretrained weights only).
        stages: ResNet stages whose output is kept (4 = the whole ResNet-18, feature stride 32; 3 stops a stage
            earlier at stride 16, so 128 px give 8x8 = 64 tokens per view instead of 4x4: the 4 cm blocks of the
            workcell are about one stride-32 cell wide).
        random_shift: training-time augmentation of every image (robomimic's and Diffusion Policy's random crop):
            padded by this many pixels (edge replicated, at ``image_size``) and cropped back at a random offset,
            per image. 0 = off. Inference never shifts.
    """

    image_size: int = 224
    width: int = 64
    weights: str | None = None
    frozen: bool = False
    stages: int = 4
    random_shift: int = 0

    def __post_init__(self):
        if self.image_size < 32:
            raise ConfigError(f"vision.image_size must be >= 32, got {self.image_size}")
        if self.stages not in (2, 3, 4):
            raise ConfigError(f"vision.stages must be 2, 3 or 4 (ResNet stages kept), got {self.stages}")
        if not 0 <= self.random_shift < self.image_size // 4:
            raise ConfigError(f"vision.random_shift must be in [0, image_size / 4), got {self.random_shift}")
        if self.weights and self.width != 64:
            raise ConfigError(f"vision.weights need the standard width 64, got width {self.width}")
        if self.frozen and not self.weights:
            raise ConfigError("vision.frozen without vision.weights would freeze a random encoder")

    @property
    def stride(self) -> int:
        return 2 ** (self.stages + 1)  # the stem halves twice, every stage after the first once more

    @property
    def tokens_per_view(self) -> int:
        side = -(-self.image_size // self.stride)
        return side * side


@dataclass
class ForwardConfig:
    """Forward dynamics (paper Sec. 3.3): [image tokens, text token, SOS, codes] -> next codes.

    Args:
        hidden / layers / heads / dropout: the autoregressive transformer.
        text_dim: width of the text embedding (384 for the default MiniLM, 512 for t5-small).
        vision: the image encoder.
    """

    hidden: int = 768
    layers: int = 8
    heads: int = 8
    dropout: float = 0.1
    text_dim: int = 384
    vision: VisionConfig = field(default_factory=VisionConfig)

    def __post_init__(self):
        _check_width(self.hidden, self.heads, "forward")
        if isinstance(self.vision, dict):
            self.vision = from_dict(VisionConfig, self.vision, "forward.vision")


@dataclass
class InverseConfig:
    """Inverse dynamics (paper Sec. 3.4): action queries over image, proprio and code tokens.

    Args:
        hidden / layers / heads / dropout: the transformer decoder.
        action_dim / proprio_dim: sizes of a_t and q_t (workcell: 7 = pose + gripper; 7 = joints + gripper).
        chunk: actions per chunk (16).
        gamma: discount of the chunk NLL, sum_k gamma^k log N(a_{t+k}).
        use_codes: False gives the paper's "inverse only" BC baseline (the same network without codes).
        text_dim: 0 (the default, as the paper): no task input. > 0: one more memory token projected from the
            task-text embedding of this width (384 for MiniLM); with use_codes=False, a language-conditioned BC.
        fixed_std: the Gaussian head's standard deviation, in normalised action units, fixed (the authors' code
            fixes it too): the loss is then a discounted squared error. None learns it per output (the paper's
            text). Learned, the dimensions that are constant within a task (the gripper's rotation) drive their
            log-std to the lower clamp, their gradients grow ~e^10 times larger than the positions' and, under
            gradient clipping, starve them (measured: 4.3 cm first-action error on the training demos).
        min_log_std / max_log_std: clamp of the learned log standard deviation.
        vision: the image encoder.
    """

    hidden: int = 768
    layers: int = 4
    heads: int = 8
    dropout: float = 0.1
    action_dim: int = 7
    proprio_dim: int = 7
    chunk: int = HORIZON
    gamma: float = 0.99
    use_codes: bool = True
    text_dim: int = 0
    fixed_std: float | None = 1.0
    min_log_std: float = -5.0
    max_log_std: float = 2.0
    vision: VisionConfig = field(default_factory=VisionConfig)

    def __post_init__(self):
        _check_width(self.hidden, self.heads, "inverse")
        if isinstance(self.vision, dict):
            self.vision = from_dict(VisionConfig, self.vision, "inverse.vision")
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"inverse.gamma must be in (0, 1], got {self.gamma}")
        if self.fixed_std is not None and not self.fixed_std > 0:
            raise ConfigError(f"inverse.fixed_std must be > 0 (or null to learn it), got {self.fixed_std}")


@dataclass
class TrainConfig:
    """Optimisation of one stage (Table 10: AdamW, lr 1e-4, batch 256 with 4 accumulation steps).

    Args:
        steps: optimizer steps. batch_size: per process and per accumulation step.
        grad_accumulation: micro-batches per optimizer step.
        lr / weight_decay / warmup_steps / grad_clip: AdamW with linear warm-up and cosine decay.
        checkpoint_every / log_every: in optimizer steps.
        seed: seeds data order, initialisation and dropout.
        amp: mixed precision on CUDA (bf16 where supported); ignored on CPU.
        num_workers: DataLoader workers (0 keeps resume exact and is fastest on 2 cores).
    """

    steps: int = 1000
    batch_size: int = 64
    grad_accumulation: int = 1
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 1.0
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0
    amp: bool = True
    num_workers: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size", "grad_accumulation", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")


@dataclass
class ModelsConfig:
    """Everything the three stages need, as one file (a preset or a user's copy of one)."""

    name: str = "custom"
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    forward: ForwardConfig = field(default_factory=ForwardConfig)
    inverse: InverseConfig = field(default_factory=InverseConfig)
    train_tokenizer: TrainConfig = field(default_factory=TrainConfig)
    train_forward: TrainConfig = field(default_factory=TrainConfig)
    train_inverse: TrainConfig = field(default_factory=TrainConfig)


def _check_width(hidden: int, heads: int, where: str) -> None:
    if hidden < 1 or heads < 1 or hidden % heads:
        raise ConfigError(f"{where}.hidden ({hidden}) must be a positive multiple of {where}.heads ({heads})")


_SECTIONS = {
    "tokenizer": TokenizerConfig, "forward": ForwardConfig, "inverse": InverseConfig,
    "train_tokenizer": TrainConfig, "train_forward": TrainConfig, "train_inverse": TrainConfig,
}


# The range of every numeric field, by name (the same rule wherever the name occurs); types come from the
# dataclass annotations. A value breaking either is refused with the file, the key, the value and the rule.
_POSITIVE = ("num_points", "horizon", "hidden", "layers", "heads", "decoder_layers", "num_classes", "train_points",
             "image_size", "width", "stages", "action_dim", "proprio_dim", "chunk", "steps", "batch_size",
             "grad_accumulation", "checkpoint_every", "log_every")
_NON_NEGATIVE = ("random_shift", "warmup_steps", "seed", "num_workers", "text_dim", "weight_decay",
                 "moving_point_bias")
_RANGES: dict[str, tuple[str, Callable[[float], bool]]] = {
    **{name: ("must be >= 1", lambda v: v >= 1) for name in _POSITIVE},
    **{name: ("must be >= 0", lambda v: v >= 0) for name in _NON_NEGATIVE},
    "dropout": ("must be in [0, 1)", lambda v: 0 <= v < 1),
    "gamma": ("must be in (0, 1]", lambda v: 0 < v <= 1),
    "lr": ("must be > 0", lambda v: v > 0),
    "grad_clip": ("must be > 0 (the largest gradient norm)", lambda v: v > 0),
    "fixed_std": ("must be > 0 (or null to learn it)", lambda v: v > 0),
    "fsq_levels": ("every level must be >= 2 (values per FSQ dimension)", lambda v: v >= 2),
    "view_weights": ("every weight must be > 0", lambda v: v > 0),
}


def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _check_value(value, hint, key: str, where: str):
    """Check ``value`` against the annotation ``hint``; returns the value (an int given for a float as a float)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    bad = lambda rule: ConfigError(f"{where}.{key} = {value!r}: {rule}")  # noqa: E731
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_value(value, inner, key, where)
    if origin is list:
        if not isinstance(value, list):
            raise bad(f"must be a list of {_type_name(args[0])}")
        try:
            return [_check_value(v, args[0], key, where) for v in value]
        except ConfigError as exc:  # name the whole list, then the rule
            raise bad(str(exc).split(": ", 2)[-1]) from None
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else from_dict(hint, value, f"{where}.{key}")
    if hint is bool:
        if not isinstance(value, bool):
            raise bad("must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("must be an integer")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("must be a number (YAML reads 1e-3 as text: write 1.0e-3)" if isinstance(value, str)
                      else "must be a number")
        value = float(value)
        if not math.isfinite(value):
            raise bad("must be finite")
    elif hint is str:
        if not isinstance(value, str):
            raise bad("must be a string")
        return value
    rule = _RANGES.get(key)
    if rule is not None and not rule[1](value):
        raise bad(rule[0])
    return value


def from_dict(cls, data: dict, where: str):
    """Build dataclass ``cls`` from ``data``: unknown keys, wrong types and out-of-range values are refused with
    their location (``where``: the file and the section)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known keys: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    values = {key: _check_value(value, hints[key], key, where) for key, value in data.items()}
    try:
        return cls(**values)
    except ConfigError as exc:  # the cross-field rules of __post_init__
        raise ConfigError(f"{where.split(': ', 1)[0]}: {exc}") from None


def models_config_from_dict(data: dict, where: str = "config") -> ModelsConfig:
    data = dict(data or {})
    unknown = set(data) - set(_SECTIONS) - {"name"}
    if unknown:
        raise ConfigError(f"{where}: unknown sections {sorted(unknown)}; known: {sorted(_SECTIONS)}")
    kwargs = {"name": data.get("name", "custom")}
    for key, cls in _SECTIONS.items():
        kwargs[key] = from_dict(cls, data.get(key, {}), f"{where}: {key}")
    return ModelsConfig(**kwargs)


def load_config(name_or_path: str | Path) -> ModelsConfig:
    """A preset by name (``tiny``, ``paper``) or a YAML file path."""
    path = Path(name_or_path)
    if not path.suffix:
        presets_dir = package_folder("config") / "models"  # the checkout's, or the install's share folder
        path = presets_dir / f"{name_or_path}.yaml"
        if not path.is_file():
            presets = sorted(p.stem for p in presets_dir.glob("*.yaml"))
            raise ConfigError(f"unknown config preset {name_or_path!r}; presets: {presets} (or give a .yaml path)")
    if not path.is_file():
        raise ConfigError(f"{path}: config file does not exist")
    return models_config_from_dict(yaml.safe_load(path.read_text()), str(path))


def to_dict(config) -> dict:
    return dataclasses.asdict(config)
