"""Evaluation sharded over processes with torchrun: every rank attacks its share of the test
images (cut at batch boundaries), the per-sample results are gathered, and rank 0 writes the
one report, equal to the report of a single process with the same batch size and seed.

The model is the teacher shipped with the package (``dard-fmnist-teacher``, Fashion-MNIST,
L-inf eps 0.1; offline) unless ``--model`` names another.

    torchrun --standalone --nproc_per_node 8 examples/sharded_evaluation.py --device cuda \\
        --n-examples 10000 --batch-size 500 --out runs/sharded
    torchrun --standalone --nproc_per_node 2 examples/sharded_evaluation.py --fast --out runs/two
    python examples/sharded_evaluation.py --fast --out runs/one      # the same report, 1 process

``--fast`` evaluates 16 images in batches of 8 with clean, FGSM, PGD, DPGD and APGD-CE (the
first part of AutoAttack) instead of 1,000 images with the full AutoAttack: seconds on a CPU.
The torch.distributed backend is gloo on the CPU, nccl on CUDA (one GPU per process).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import parse_args, process_group

from dard_plugin import evaluate, load_teacher
from dard_plugin.data import load_dataset
from dard_plugin.recipes import default_eps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="dard-fmnist-teacher", help="a teacher name")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument(
        "--eps", type=float, default=None, help="default: the dataset's (0.1; CIFAR 8/255)"
    )
    parser.add_argument("--attacks", default="clean,fgsm,pgd,dpgd,autoattack")
    parser.add_argument("--n-examples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", default="runs/sharded_evaluation")
    args = parse_args(
        parser,
        fast={"attacks": "clean,fgsm,pgd,dpgd,apgd-ce", "n_examples": 16, "batch_size": 8},
    )
    if args.eps is None:
        args.eps = default_eps(args.dataset, "Linf")
    with process_group(args.device) as (world_size, rank, device):
        # every rank loads the same model and data; evaluate() checks that they agree
        model = load_teacher(args.model, dataset=args.dataset, device=device)
        images, labels = load_dataset(args.dataset, train=False, n_examples=args.n_examples)
        report = evaluate(
            model,
            images,
            labels,
            eps=args.eps,
            attacks=args.attacks.split(","),
            batch_size=args.batch_size,
            seed=args.seed,
            device=device,
            model_name=args.model,
            verbose=False,
        )
        if rank == 0:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            report.to_json(out / "report.json")
            (out / "report.md").write_text(report.to_markdown())
            print(f"{world_size} process(es), shards {report.shards}")
            print(report.to_markdown())
            print(f"written: {out / 'report.json'}")


if __name__ == "__main__":
    main()
