"""ResNet-18 image encoder whose last feature map becomes patch tokens (paper Sec. 3.3).

The network follows torchvision's ResNet-18 layout and parameter names, so a user's local ImageNet
checkpoint (``resnet18-*.pth``, a plain state dict) loads with ``VisionConfig.weights``; nothing is
downloaded. ``width`` scales every stage (64 = standard; 16 or 32 for the tiny CPU models). Images enter
as uint8 (B, 3, H, W), are resized to ``image_size`` and normalised with the ImageNet statistics.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .configs import VisionConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + identity)


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Every image of (B, C, H, W) padded by ``pad`` pixels (edges replicated) and cropped back to H x W at its own
    random offset: the random-shift augmentation of DrQ, robomimic and Diffusion Policy. Integer shifts by slicing
    (a gather or grid_sample over the batch cost a third of a CPU training step)."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (len(x), 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])


class ResNet18Tokens(nn.Module):
    """uint8 images (B, 3, H, W) -> tokens (B, (S/stride)^2, channels of the last kept stage)."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        chans = [w, w, 2 * w, 4 * w, 8 * w]
        for i in range(config.stages):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(chans[i], chans[i + 1], stride),
                                                         BasicBlock(chans[i + 1], chans[i + 1], 1)))
        self.out_dim = chans[config.stages]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0, persistent=False)
        if config.weights:
            self.load_weights(config.weights)
        if config.frozen:
            self.requires_grad_(False)

    def load_weights(self, path: str) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vision weights {path}: no such file")
        state = torch.load(path, map_location="cpu", weights_only=True)
        unused = ("fc.",) + tuple(f"layer{i}." for i in range(self.config.stages + 1, 5))  # classifier, dropped stages
        state = {k: v for k, v in state.items() if not k.startswith(unused)}
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"vision weights {path} do not match ResNet-18: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")

    def train(self, mode: bool = True):
        # a frozen pretrained encoder keeps its BatchNorm statistics
        return super().train(mode and not self.config.frozen)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"vision encoder expects images (B, 3, H, W), got {tuple(images.shape)}")
        x = images.float()
        size = self.config.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        if self.training and self.config.random_shift:
            x = random_shift(x, self.config.random_shift)
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)  # oneDNN's fast conv layout
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for i in range(self.config.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x.flatten(2).transpose(1, 2)


class MultiViewEncoder(nn.Module):
    """Encodes V views with one shared ResNet and projects to ``hidden``, adding a per-view embedding.

    Input uint8 (B, V, 3, H, W) -> tokens (B, V * tokens_per_view, hidden).
    """

    def __init__(self, config: VisionConfig, num_views: int, hidden: int):
        super().__init__()
        self.num_views = num_views
        self.backbone = ResNet18Tokens(config)
        self.proj = nn.Linear(self.backbone.out_dim, hidden)
        self.view_embed = nn.Parameter(torch.randn(num_views, 1, hidden) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, config.tokens_per_view, hidden) * 0.02)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 5 or images.shape[1] != self.num_views or images.shape[2] != 3:
            raise ValueError(f"expected images (B, views={self.num_views}, 3, H, W), got {tuple(images.shape)}")
        b, v = images.shape[:2]
        tokens = self.proj(self.backbone(images.flatten(0, 1))) + self.pos  # (B*V, P, hidden)
        tokens = tokens.view(b, v, -1, tokens.shape[-1]) + self.view_embed
        return tokens.flatten(1, 2)
