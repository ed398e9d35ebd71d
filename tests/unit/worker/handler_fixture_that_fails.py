"""A handler module whose top level fails, as one missing a setting would (imported by a test)."""

raise RuntimeError("DATABASE_URL is not set")
