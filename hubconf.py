"""torch.hub entry points: one for every model in the zoo's catalog.

    torch.hub.load("path/to/zoo", "resnet50", source="local", weights="DEFAULT")
    torch.hub.load("OWNER/REPO", "resnet50", weights="DEFAULT")    # the repository on GitHub
    torch.hub.list("OWNER/REPO")                                    # the entries: zoo.list_models()

torch.hub.list has no ``source`` argument (torch 2.x: ``list(github, force_reload,
skip_validation, trust_repo, verbose)``): it reads GitHub repositories only, from
torch.hub's cache (``$TORCH_HOME/hub/OWNER_REPO_REF``) once downloaded. A local checkout
has no torch.hub.list; its entries are `zoo.list_models()`.

Each entry is `zoo.get_model` for one registered name, so torch.hub and the zoo's
own lookups give the same model, with weights fetched and verified the same way.
"""

import zoo as _zoo

dependencies = ["torch", "torchvision", "zoo"]


def _entry(name):
    def entry(*, weights=None, **config):
        return _zoo.get_model(name, weights=weights, **config)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"{name} from the zoo; `weights` is any name `zoo.get_weight` accepts, an enum member or None."
    return entry


globals().update({_name: _entry(_name) for _name in _zoo.list_models()})
