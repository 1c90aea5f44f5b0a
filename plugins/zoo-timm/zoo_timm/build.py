"""The builder of every timm model in the zoo: ``timm.create_model``, with the zoo's verified tensors.

The zoo reads a weights file itself (fetched, checked by its full SHA-256, loaded as
tensors only) and hands the state dict to `create` as ``pretrained_state_dict``. timm
then loads it as it loads its own downloads (`timm.models.load_pretrained`, through the
``state_dict`` source of its pretrained config): the model's checkpoint filter
(position embeddings resampled for another ``img_size``, converted layouts), the first
convolution adapted for ``in_chans``, the head dropped for another ``num_classes``
(``0``: pooled features), the feature wrapper of ``features_only`` and ``out_indices``.
So every keyword timm adapts pretrained weights for works here, with the same result.
"""

from __future__ import annotations

from typing import Any


def create(model_name: str, *, pretrained_state_dict: dict[str, Any] | None = None,
           in_channels: int | None = None, **kwargs: Any) -> Any:
    """``timm.create_model(model_name, **kwargs)``, loading `pretrained_state_dict` as timm loads pretrained weights.

    `in_channels` is the zoo's name for timm's ``in_chans`` (either may be given, not both).
    """
    import timm

    if in_channels is not None:
        if "in_chans" in kwargs:
            from zoo.errors import UsageError

            raise UsageError("give in_channels or timm's in_chans, not both")
        kwargs["in_chans"] = in_channels
    if pretrained_state_dict is None:
        return timm.create_model(model_name, **kwargs)
    overlay = {**(kwargs.pop("pretrained_cfg_overlay", None) or {}),
               "state_dict": pretrained_state_dict, "source": None}
    model = timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    _forget_state_dict(model)
    return model


def _forget_state_dict(model: Any) -> None:
    """Drop the copies of the state dict that timm keeps in the pretrained configs of `model` and its modules
    (the model's tensors hold what was loaded; the configs would hold a second copy for the model's life)."""
    for module in model.modules():
        for cfg in (getattr(module, "pretrained_cfg", None), getattr(module, "default_cfg", None)):
            if isinstance(cfg, dict):
                cfg.pop("state_dict", None)
