"""Fine-tune the shipped digits model for a new task: is the digit odd or even?

The worked example of the zoo's fine-tuning tools, on the CPU in seconds:

1. build ``digits_cnn`` with its pretrained weights and a fresh 2-class head
   (`zoo.build_model`, which reports what it loaded);
2. freeze the backbone (BatchNorm layers become frozen) and train the head;
3. unfreeze the last convolution block and train it at a lower learning rate than the head;
4. report the held-out accuracy of the new task;
5. with ``--save FILE``, write the fine-tuned weights as safetensors, ready for
   ``zoo publish weights digits_cnn FILE --categories even,odd`` (replacing an
   existing FILE only with ``--force``).

The data is scikit-learn's digits with the split the weights were trained on, so the
held-out images were never seen, by the pretrained model or here.

    .venv/bin/python examples/finetune_digits.py [--head-epochs 3] [--block-epochs 3] [--save FILE [--force]]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

import zoo
from zoo_digits.model import evaluate
from zoo_digits.train import digits_uint8, split

LAST_BLOCK = ["features.7", "features.8"]  # the third conv block: conv and its BatchNorm
BATCH_SIZE = 64


def train(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor, targets: torch.Tensor,
          epochs: int, stage: str) -> None:
    """Plain minibatch training with a progress bar per epoch."""
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(targets))
        batches = tqdm(range(0, len(order), BATCH_SIZE), desc=f"{stage} epoch {epoch + 1}/{epochs}", leave=False)
        for start in batches:
            picked = order[start:start + BATCH_SIZE]
            loss = loss_fn(model(inputs[picked]), targets[picked])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            batches.set_postfix(loss=f"{loss.item():.3f}", refresh=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--head-epochs", type=int, default=3)
    parser.add_argument("--block-epochs", type=int, default=3)
    parser.add_argument("--save", metavar="FILE", help="write the fine-tuned weights here (safetensors)")
    parser.add_argument("--force", action="store_true", help="with --save: replace an existing FILE")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # bit-for-bit the same run on any CPU of this kind

    images, digits = digits_uint8()
    train_idx, test_idx = split(digits)
    parity = digits % 2  # the new task: 0 even, 1 odd

    built = zoo.build_model("digits_cnn", weights="DEFAULT", num_classes=2)
    model = built.model
    print(f"== new head\n{built.report}")
    weights = zoo.get_weight("digits_cnn.DEFAULT")
    with torch.no_grad():
        inputs = weights.transforms()(torch.from_numpy(images[train_idx]).unsqueeze(1))
    targets = torch.from_numpy(parity[train_idx])

    print(f"\n== stage 1: train the head, backbone frozen\n{zoo.freeze(model, except_=['classifier'])}")
    optimizer = torch.optim.AdamW(zoo.param_groups(model, lr=1e-2, weight_decay=1e-4))
    train(model, optimizer, inputs, targets, args.head_epochs, "head")
    head_only = evaluate(model, weights, images[test_idx], parity[test_idx])
    print(f"held-out parity accuracy, head only: {head_only:.2%}")

    print(f"\n== stage 2: unfreeze the last block, at a tenth of the head's rate\n{zoo.unfreeze(model, LAST_BLOCK)}")
    groups = zoo.param_groups(model, lr={"classifier": 1e-2, "*": 1e-3}, weight_decay=1e-4)
    for group in groups:
        print(f"  {group['name']}: lr {group['lr']:g}, weight decay {group['weight_decay']:g}, "
              f"{sum(p.numel() for p in group['params']):,} parameters")
    train(model, torch.optim.AdamW(groups), inputs, targets, args.block_epochs, "block")
    final = evaluate(model, weights, images[test_idx], parity[test_idx])
    correct = round(final * len(test_idx))
    print(f"\nheld-out parity accuracy: {final:.2%} ({correct}/{len(test_idx)} images)")
    if args.save:
        from safetensors.torch import save_file

        from zoo.outputs import staged_output

        with staged_output(args.save, overwrite=args.force, what="weights file") as folder:
            save_file(model.state_dict(), str(folder / Path(args.save).name))
        print(f"wrote {args.save}")


if __name__ == "__main__":
    try:
        main()
    except zoo.ZooError as exc:  # a user mistake (e.g. --save onto an existing file): one line, no traceback
        raise SystemExit(f"finetune_digits.py: error: {exc}") from None
