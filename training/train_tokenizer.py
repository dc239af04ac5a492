"""amplify-train-tokenizer: stage 1, the motion tokenizer (keypoint velocities -> FSQ codes).

Example::

    amplify-train-tokenizer --store data/robot data/human --run-dir runs/exp1 --config tiny
    torchrun --nproc-per-node 2 -m training.train_tokenizer --store data/robot --run-dir runs/exp1

Writes RUN_DIR/tokenizer.pt; RUN_DIR/checkpoints/tokenizer_last.pt lets an interrupted run resume.
"""

from __future__ import annotations

import sys

from amplify_core.configs import load_config

from .cli_common import add_stores, parser, setup_logging, input_errors_as_one_line
from .stages import train_tokenizer


@input_errors_as_one_line("amplify-train-tokenizer")
def main(argv=None) -> int:
    p = parser("amplify-train-tokenizer", __doc__)
    add_stores(p, "any embodiment")
    args = p.parse_args(argv)
    setup_logging()
    result = train_tokenizer(load_config(args.config), args.store, args.run_dir, args.steps, args.device,
                             progress=not args.quiet)
    print(f"tokenizer: step {result.step}, last loss {result.losses[-1] if result.losses else float('nan'):.4f}, "
          f"checkpoint {result.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
