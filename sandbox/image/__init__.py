"""Images: the store of read-only root filesystems jobs run in (``store``),
and the safe import of archives into it (``archive``)."""
