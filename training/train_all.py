"""amplify-train-all: the three stages in a row into one run directory (resumable stage by stage).

Example::

    amplify-train-all --videos data/robot data/human --robot data/robot --run-dir runs/exp1 --config tiny

Stage 1 (tokenizer) and 2 (forward) use every store given to --videos; stage 3 (inverse) uses --robot.
A finished stage (its RUN_DIR/<stage>.pt exists) is skipped when the command is run again.
"""

from __future__ import annotations

import sys
from pathlib import Path

from amplify_core.configs import load_config

from .cli_common import parser, setup_logging, input_errors_as_one_line
from .stages import train_forward, train_inverse, train_tokenizer


@input_errors_as_one_line("amplify-train-all")
def main(argv=None) -> int:
    p = parser("amplify-train-all", __doc__)
    p.add_argument("--videos", type=Path, nargs="+", required=True, help="stores for the tokenizer and forward model")
    p.add_argument("--robot", type=Path, nargs="+", required=True, help="stores with actions for the inverse model")
    p.add_argument("--finetune-steps", type=int, default=0, help="inverse fine-tuning on predicted codes (default 0)")
    p.add_argument("--text-encoder", choices=["minilm", "t5"], default="minilm", help="task text encoder")
    p.add_argument("--t5-path", default=None, help="local T5 directory (with --text-encoder t5)")
    args = p.parse_args(argv)
    setup_logging()
    config = load_config(args.config)
    run = args.run_dir
    progress = not args.quiet
    if not (run / "tokenizer.pt").exists():
        train_tokenizer(config, args.videos, run, args.steps, args.device, progress=progress)
    if not (run / "forward.pt").exists():
        train_forward(config, args.videos, run, run / "tokenizer.pt", args.steps, args.device, args.text_encoder,
                      args.t5_path, progress=progress)
    if not (run / "inverse.pt").exists():
        train_inverse(config, args.robot, run, run / "tokenizer.pt", run / "forward.pt", args.steps,
                      args.finetune_steps, True, args.device, progress=progress)
    print(f"done: {run}/tokenizer.pt, forward.pt, inverse.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
