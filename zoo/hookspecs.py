"""The plugin author's contract.

A plugin is an installed distribution with an entry point in the group ``zoo``::

    [project.entry-points.zoo]
    mymodels = "mymodels_zoo"

The module it names implements one or more of the hooks below, marked with
`zoo.hookimpl`. Hooks return plain data (`zoo.ModelSpec`); the zoo stores it in its
catalog and imports the builders only when a model is built. A hook runs only when
the catalog is synced, which happens by itself when the set or versions of
installed plugins change (or on ``zoo sync``), in a child process with a deadline
(``ZOO_SYNC_TIMEOUT``).

A module that implements no hook, or a function marked `zoo.hookimpl` whose name
is not a hook below (a misspelling), fails to load with that reason.
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from zoo.specs import ModelSpec

PROJECT = "zoo"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def zoo_register_models() -> Iterable[ModelSpec]:
    """Return the models this plugin adds to the zoo.

    Each model name must be unique across all installed plugins: a name another
    plugin already registered makes this plugin fail to load (the error names both
    distributions). Raising here marks this plugin as failed; other plugins still load.
    """
