"""train.py: trains a config with weft from Python and prints each step's loss on rank 0.

    python examples/train.py configs/tiny.yaml train.steps=20 [--save DIR]
    mpirun -np 2 python examples/train.py configs/tiny.yaml train.steps=20

Also reads the parameters as NumPy arrays (zero-copy views of weft's storage) and, with --save, checkpoints the
result and loads it back.
"""
import argparse
import sys

import numpy as np

import weft


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE, as weft train --set")
    parser.add_argument("--save", help="checkpoint directory to save the trained model under")
    args = parser.parse_args()
    trainer = weft.Trainer(args.config, dict(item.split("=", 1) for item in args.overrides))
    leader = trainer.rank == 0
    if leader:
        print(f"train.py: weft {weft.__version__}, {trainer.world_size} rank(s), {trainer.plan()['parameters']} "
              "parameters")
    for metrics in trainer.train():
        if leader:
            print(f"step {metrics['step']:3d}  loss {metrics['loss']:.6f}  {metrics['tokens_per_s']:.0f} tok/s")
    if leader:
        name, view = next(iter(trainer.parameters().items()))
        print(f"train.py: |{name}| = {np.linalg.norm(view):.4f} after {trainer.steps_done} steps")
    if args.save:
        trainer.save(args.save)
        step = trainer.load(args.save)
        if leader:
            print(f"train.py: saved and reloaded step {step} under {args.save}")


if __name__ == "__main__":
    try:
        main()
    except weft.WeftError as error:
        print(f"train.py: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
