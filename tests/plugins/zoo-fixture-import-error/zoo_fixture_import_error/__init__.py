"""Fails as it is imported, like a plugin with a missing dependency."""

raise RuntimeError("fixture plugin broken on import")
