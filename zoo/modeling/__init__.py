"""The modeling tier (torch): building on catalog models without the catalog.

`surgery` (submodules by path, new heads and stems, partial loading), `freezing`,
`optim` (parameter groups), `features` (torch.fx feature extraction), `weights`
(weights enums and verified state dicts), `transforms` (preprocessing specs to and
from torchvision transforms) and `summary` (per-layer summaries, features of a
catalog name). torch is imported by these modules, never by ``import zoo``.
"""
