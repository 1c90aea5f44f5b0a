"""The plugin author's contract.

A plugin is an installed distribution with an entry point in the group ``zoo``::

    [project.entry-points.zoo]
    mymodels = "mymodels_zoo"

The module it names implements one or more of the hooks below, marked with
`zoo.hookimpl`. Hooks return plain data (`zoo.ModelSpec`); the zoo stores it in its
catalog and imports the builders only when a model is built. A hook runs only when
the catalog is synced, which happens by itself when the plugin, its version or the
versions of the distributions it requires change (or on ``zoo sync``), in a child
process with a deadline (``ZOO_SYNC_TIMEOUT``). The catalog gives the plugin a
namespace: its entry-point name, or its distribution's name when another plugin
has that one already.

A module that implements no hook, or a function marked `zoo.hookimpl` whose name
is not a hook below (a misspelling), fails to load with that reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pluggy

from zoo.specs import DeferredSpec, ModelSpec

if TYPE_CHECKING:
    from zoo.export.tasks import TaskAdapter

PROJECT = "zoo"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def zoo_register_models() -> Iterable[ModelSpec | DeferredSpec]:
    """Return the models this plugin adds to the zoo: `zoo.ModelSpec`s, or `zoo.DeferredSpec`s
    whose spec the zoo makes when it loads the plugin.

    Each spec is checked on its own: a bad one (or a `DeferredSpec` whose ``make``
    raises, or a name this plugin returns twice) fails that model alone, recorded with
    its name, error and traceback (``zoo plugins --verbose``); the others load. A
    name another plugin also registers is no error: every model is reachable as
    ``NAMESPACE/NAME``, and a bare name keeps meaning what it meant before this plugin
    was installed. Raising here, or returning anything but specs, marks this plugin as
    failed; other plugins still load.
    """


@hookspec
def zoo_register_tasks() -> Iterable[TaskAdapter]:
    """Return the tasks this plugin adds: instances of `zoo.TaskAdapter` subclasses.

    An adapter holds everything the zoo knows about its task (`zoo.export.tasks`): how a
    model of the task is exported and verified, and how its outputs are decoded and
    drawn. Subclass a built-in adapter (``zoo.export.tasks.classification.Classification``,
    say) to extend a task under a new name. Unlike model registration this hook runs
    whenever the zoo needs a task it does not know, also on a deployment host: its
    module must import without torch. The built-in tasks keep their adapters.
    """
