"""Garbage collection of the artifact store: ``zoo gc`` removes the blobs no catalog row points at, and
unfinished uploads, once they are older than a grace period.

A blob is garbage when no published weights version and no published export has its SHA-256
(`Catalog.referenced_blobs`): a publish that failed after storing its file, or two machines that
stored the same file while one of them lost its row. Leftovers (`ArtifactStore.leftovers`) are the
unfinished uploads a killed writer left: temporary files, the service's upload folders, incomplete
multipart uploads.

Why the order of `collect` is safe while others publish: a publish stores its blob first and writes
its catalog row afterwards, so a blob may be unreferenced for a while, as long as its publish takes
(checking the file, verifying an export again, a slow upload). `collect` therefore lists the store
first and reads the referenced set afterwards: a row written before that read keeps its blob; a blob
stored after the listing is not a candidate at all; and a blob stored before the listing whose row
comes after the read is younger than the grace period (a store dates a blob by its last store, and
storing bytes it already holds dates them again), so it is kept. The grace period must therefore be
longer than any publish or upload takes: ``zoo gc`` defaults to 24 hours, and the clocks of the
machines and the object store must agree to within far less. Leftovers are removed only when older
than the grace period too: a write in flight keeps its file's time recent. A blob or leftover that
vanished meanwhile (another ``zoo gc``) is not an error; it is not counted as removed here.

As a guard against a catalog and a store that do not belong together (``$ZOO_REGISTRY_URL`` or
``$ZOO_ARTIFACTS`` set wrong, which would make every blob look unreferenced), nothing is removed
when the catalog references none while the store holds some, or references one the store lacks:
the command refuses in one line instead.

Torch-free and SQL-free: it works through the `Catalog` and `ArtifactStore` protocols only.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.errors import ArtifactError, UsageError, excerpt
from zoo.settings import ARTIFACTS, REGISTRY_URL

if TYPE_CHECKING:
    from zoo.catalog.api import Catalog
    from zoo.store import Artifact, ArtifactStore, Leftover

__all__ = ["DEFAULT_GRACE", "GcReport", "collect", "parse_duration"]

#: The grace period of ``zoo gc``: longer than any upload or publish takes (see the module docstring).
DEFAULT_GRACE = 24 * 3600.0
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")


@dataclass(frozen=True)
class GcReport:
    """What `collect` removed (or, with `dry_run`, would remove) and what it kept.

    `removed`: the unreferenced blobs older than the grace period; `leftovers`: the unfinished uploads
    older than it; `referenced`: blobs kept because the catalog points at them; `young_blobs` and
    `young_leftovers`: unreferenced blobs and leftovers kept because they are younger than `grace` seconds.
    """

    removed: tuple[Artifact, ...]
    leftovers: tuple[Leftover, ...]
    referenced: int
    young_blobs: int
    young_leftovers: int
    grace: float
    dry_run: bool

    @property
    def files_freed(self) -> int:
        """Blobs and leftovers removed (an upload folder counts once)."""
        return len(self.removed) + len(self.leftovers)

    @property
    def bytes_freed(self) -> int:
        return sum(a.size for a in self.removed) + sum(left.size for left in self.leftovers)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "grace_seconds": self.grace,
            "removed": [{"sha256": a.sha256, "size": a.size, "modified": a.modified} for a in self.removed],
            "leftovers": [{"name": left.name, "size": left.size, "modified": left.modified}
                          for left in self.leftovers],
            "kept_referenced": self.referenced,
            "kept_young": {"blobs": self.young_blobs, "leftovers": self.young_leftovers},
            "files_freed": self.files_freed,
            "bytes_freed": self.bytes_freed,
        }


def collect(catalog: Catalog, store: ArtifactStore, *, grace: float, dry_run: bool) -> GcReport:
    """Remove from `store` the blobs `catalog` does not reference and the leftovers, each only when older than
    `grace` seconds; with `dry_run`, remove nothing and report what would go. See the module docstring for why
    the store is listed before the catalog is read, and for the guard against a catalog of another store."""
    if not grace >= 0:  # NaN too
        raise UsageError(f"the grace period must be 0 seconds or more, not {excerpt(grace)}")
    cutoff = time.time() - grace
    blobs = list(store)  # first: see the module docstring
    leftovers = list(store.leftovers())
    referenced = catalog.referenced_blobs()
    unreferenced = [a for a in blobs if a.sha256 not in referenced]
    old = [a for a in unreferenced if a.modified <= cutoff]
    if old:
        _check_belongs(referenced, blobs, store)
    old_leftovers = [left for left in leftovers if left.modified <= cutoff]
    if not dry_run:
        old = [a for a in old if store.delete(a.sha256)]
        old_leftovers = [left for left in old_leftovers if store.remove_leftover(left)]
    return GcReport(removed=tuple(old), leftovers=tuple(old_leftovers), referenced=len(blobs) - len(unreferenced),
                    young_blobs=sum(a.modified > cutoff for a in unreferenced),
                    young_leftovers=len(leftovers) - sum(left.modified <= cutoff for left in leftovers),
                    grace=grace, dry_run=dry_run)


def parse_duration(text: str) -> float:
    """A duration as ``zoo gc --grace`` takes it, in seconds: ``24h``, ``30m``, ``7d``, ``90s``, ``90`` or ``0``."""
    match = _DURATION.fullmatch(text) if len(text) <= 100 else None
    if not match:
        raise UsageError(f"{excerpt(text)} is not a duration; use e.g. 24h, 30m, 7d, 90s or 0")
    return float(match[1]) * _UNITS[match[2]]


def _check_belongs(referenced: set[str], blobs: list[Artifact], store: ArtifactStore) -> None:
    """Refuse (one `ArtifactError` line) when the catalog and the store may not belong together: the catalog
    references no blob while the store holds some, or a blob the store lacks. A referenced blob missing from
    the listing may have been published since: only one the store still lacks now counts."""
    if blobs and not referenced:
        raise ArtifactError(f"the catalog references no file, and the artifact store {store.location} holds "
                            f"{len(blobs)}: zoo gc removes nothing when the catalog may not be this store's; "
                            f"check {REGISTRY_URL} and {ARTIFACTS}")
    listed = {a.sha256 for a in blobs}
    lost = next((sha256 for sha256 in sorted(referenced - listed) if not store.exists(sha256)), None)
    if lost is not None:
        raise ArtifactError(f"the catalog references a file the artifact store {store.location} lacks "
                            f"(SHA-256 {lost}): zoo gc removes nothing when the catalog may not be this store's; "
                            f"check {REGISTRY_URL} and {ARTIFACTS}, or publish the missing file again")
