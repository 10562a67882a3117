"""DARD trained from Python over several processes with torchrun: your script joins the
process group, the trainer wraps the student in DistributedDataParallel and splits each
epoch's training images across the ranks, rank 0 alone writes the checkpoint and the
history; the evaluation that follows is sharded the same way and rank 0 writes its report.

    torchrun --standalone --nproc_per_node 2 examples/distributed_training.py --fast \\
        --out runs/ddp                                      # seconds on a CPU (gloo)
    torchrun --standalone --nproc_per_node 8 examples/distributed_training.py --device cuda \\
        --n-train 55000 --epochs 30 --out runs/ddp          # one GPU per process (nccl)
    python examples/distributed_training.py --fast --out runs/one   # one process, no group

``--batch-size`` is per process (8 processes of 16 train on batches of 128 in all). A run
is resumed by the same number of processes: rerun the same command after an interruption
and it trains only the epochs left (another number of processes is refused). The teacher
is the one shipped with the package (``dard-fmnist-teacher``, Fashion-MNIST, L-inf eps
0.1; offline); every rank loads it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.distributed as dist
from _common import parse_args, process_group

from dard_plugin import DARDTrainer, evaluate, load_teacher
from dard_plugin.data import load_dataset
from dard_plugin.models import create


def parameter_spread(model: torch.nn.Module) -> float:
    """The largest difference of any parameter between the ranks (0.0: all hold the same
    student, as DistributedDataParallel keeps them)."""
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    high, low = flat.clone(), flat.clone()
    if dist.is_initialized():
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return float((high - low).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-train", type=int, default=10000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=0.015, help="the leaderboard's DARD rate")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=Path("runs/distributed_training"))
    args = parse_args(parser, fast={"n_train": 128, "n_test": 16, "epochs": 1, "batch_size": 32})
    with process_group(args.device) as (world_size, rank, device):
        # every rank builds the same student (the same seed) and reads the same images; the
        # trainer gives each rank its share of every epoch
        teacher = load_teacher("dard-fmnist-teacher", device=device)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            student = create("small-cnn", num_classes=10).to(device)
        optimizer = torch.optim.SGD(
            student.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4
        )
        x, y = load_dataset("fashion-mnist", n_examples=args.n_train)
        trainer = DARDTrainer(
            student,
            teacher,
            optimizer=optimizer,
            attack={"eps": args.eps, "alpha": args.eps / 4, "steps": 10},
            checkpoint_dir=args.out / "checkpoint",  # rank 0 writes it, atomically
            resume=True,  # the same command continues an interrupted run
            device=device,
            verbose=False,
        )
        history = trainer.fit(x, y, batch_size=args.batch_size, nb_epochs=args.epochs)
        spread = parameter_spread(student)

        x_test, y_test = load_dataset("fashion-mnist", train=False, n_examples=args.n_test)
        report = evaluate(  # sharded over the ranks; every rank gets the whole report
            student.eval(),
            x_test,
            y_test,
            eps=args.eps,
            attacks=["fgsm", "pgd", "dpgd"],
            batch_size=max(1, args.n_test // (2 * world_size)),
            device=device,
            model_name="dard-small-cnn",
            verbose=False,
        )
        if rank == 0:
            report.to_json(args.out / "report.json")
            print(
                f"{world_size} process(es) of batch {args.batch_size}: trained "
                f"{trainer.epochs_run} epoch(s), {len(history)} in the history; the ranks' "
                f"parameters differ by at most {spread:.1e}"
            )
            print(f"evaluation shards {report.shards}")
            print(report.to_markdown())
            print(f"written: {args.out / 'checkpoint'}, {args.out / 'report.json'}")


if __name__ == "__main__":
    main()
