"""Training: fine-tuning a catalog model on a folder of labelled images (``zoo finetune``, `zoo.finetune`).

- `zoo.training.recipe`: the `Recipe` (every argument of a run, the seed included) and the
  typed results (`EpochMetrics`, `FinetuneResult`), as JSON; no torch.
- `zoo.training.images`: the torch `Dataset` of `zoo.datasets.ImageData` samples, and the
  evaluation and training transforms derived from a weights entry's `PreprocessSpec`.
- `zoo.training.finetune`: the loop (AdamW or SGD, cosine schedule with warm-up, mixed precision on
  CUDA), its checkpoints, resuming, the run record and publishing.
- `zoo.training.distributed`: several processes (``--nproc``): the launch through torchrun and
  each process's world (its share of the data, the sums across processes).
- `zoo.training.evaluate`: ``zoo eval`` of a model in PyTorch (the metrics: `zoo.runtime.evaluation`).
"""
