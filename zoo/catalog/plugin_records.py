"""What ``zoo plugins`` shows: every plugin of the catalog, with its namespace, its
failed models and whether this machine has it.

Core queries only: no ORM, no torch, no plugin import (whether a plugin is installed
here comes from its entry point's metadata).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from zoo.catalog import tables
from zoo.plugins import installed_here


def plugin_records(conn: Connection) -> list[dict[str, Any]]:
    """One record per plugin row, by namespace: name, namespace, distribution, version, status, error,
    models (how many), failures ([{name, error, traceback}]) and installed_here (this version is installed here)."""
    p, m = tables.plugins, tables.models
    counts = dict(conn.execute(select(m.c.plugin_id, func.count()).group_by(m.c.plugin_id)).all())
    failures = _failures(conn)
    rows = conn.execute(select(p).order_by(p.c.namespace)).all()
    return [
        {
            "name": row.name,
            "namespace": row.namespace,
            "distribution": row.distribution,
            "version": row.version,
            "status": row.status,
            "error": row.error,
            "models": counts.get(row.id, 0),
            "failures": failures.get(row.id, []),
            "installed_here": here,
        }
        for row, here in zip(rows, installed_here((r.name, r.distribution, r.version) for r in rows))
    ]


def _failures(conn: Connection) -> dict[int, list[dict[str, Any]]]:
    """Each plugin's failed models by plugin id, in the order the plugin returned them."""
    f = tables.model_failures
    failures: dict[int, list[dict[str, Any]]] = {}
    for row in conn.execute(select(f.c.plugin_id, f.c.name, f.c.error, f.c.traceback).order_by(f.c.id)):
        failures.setdefault(row.plugin_id, []).append(
            {"name": row.name, "error": row.error, "traceback": row.traceback})
    return failures
