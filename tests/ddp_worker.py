"""Run by tests/test_training.py under torchrun: a few DDP steps, then each rank saves its weights."""

import sys
from pathlib import Path

import torch
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from amplify_core.configs import TokenizerConfig, TrainConfig  # noqa: E402
from amplify_core.tokenizer import MotionTokenizer  # noqa: E402
from training.trainer import train  # noqa: E402


class Windows(Dataset):
    def __init__(self, n=16):
        g = torch.Generator().manual_seed(0)
        self.vel = torch.randn(n, 1, 15, 16, 2, generator=g) * 0.02
        self.lab = torch.randint(0, 225, (n, 1, 15, 16), generator=g)

    def __len__(self):
        return len(self.vel)

    def __getitem__(self, i):
        return {"velocities": self.vel[i], "labels": self.lab[i]}


if __name__ == "__main__":
    out = Path(sys.argv[1])
    torch.manual_seed(1234 + int(__import__("os").environ["RANK"]))  # different init per rank on purpose
    model = MotionTokenizer(TokenizerConfig(views=["front"], num_points=16, hidden=32, layers=1, heads=2,
                                            decoder_layers=1, dropout=0.1))
    cfg = TrainConfig(steps=4, batch_size=4, lr=1e-3, warmup_steps=1, checkpoint_every=100)
    result = train("tok", model, Windows(), lambda m, b: m.module.loss(m(b["velocities"])[0], b["labels"]),
                   cfg, out, progress=False)
    rank = torch.distributed.get_rank()
    torch.save({"state": model.state_dict(), "losses": result.losses}, out / f"rank{rank}.pt")
