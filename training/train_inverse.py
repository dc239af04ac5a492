"""amplify-train-inverse: stage 3, the inverse dynamics model (image + proprio + codes -> action chunk).

Trains on robot episodes with actions (any robot data, not only experts). With --forward and
--finetune-steps it is then fine-tuned on the codes the frozen forward model predicts (paper Sec. 3.4).
--no-codes trains the inverse-only behaviour-cloning baseline (the same network without codes).

Example::

    amplify-train-inverse --store data/robot --tokenizer runs/exp1/tokenizer.pt --run-dir runs/exp1
    amplify-train-inverse ... --forward runs/exp1/forward.pt --finetune-steps 200
    amplify-train-inverse --store data/robot --no-codes --name bc --run-dir runs/exp1

Writes RUN_DIR/<name>.pt (and <name>_finetuned.pt when fine-tuning).
"""

from __future__ import annotations

import sys
from pathlib import Path

from amplify_core.configs import load_config

from .cli_common import add_stores, parser, setup_logging, input_errors_as_one_line
from .stages import train_inverse


@input_errors_as_one_line("amplify-train-inverse")
def main(argv=None) -> int:
    p = parser("amplify-train-inverse", __doc__)
    add_stores(p, "robot episodes with actions")
    p.add_argument("--tokenizer", type=Path, default=None, help="tokenizer checkpoint (not needed with --no-codes)")
    p.add_argument("--forward", type=Path, default=None, help="forward checkpoint for fine-tuning on its codes")
    p.add_argument("--finetune-steps", type=int, default=0, help="steps of fine-tuning on predicted codes (default 0)")
    p.add_argument("--no-codes", action="store_true", help="train the inverse-only BC baseline")
    p.add_argument("--demo-share", type=float, default=None,
                   help="with demos and play data (episodes without a task text) in the stores: repeat the demos' "
                        "frames until they are at least this share of the samples, e.g. 0.5 (default: no rebalancing)")
    p.add_argument("--name", default=None, help="checkpoint name (default inverse, or bc with --no-codes)")
    args = p.parse_args(argv)
    setup_logging()
    name = args.name or ("bc" if args.no_codes else "inverse")
    result = train_inverse(load_config(args.config), args.store, args.run_dir, args.tokenizer, args.forward,
                           args.steps, args.finetune_steps, not args.no_codes, args.device, name,
                           progress=not args.quiet, demo_share=args.demo_share)
    print(f"{name}: step {result.step}, checkpoint {result.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
