"""``with X(...) as x:``: the runtime's resources (model sessions, cameras, the template
store, generators) close on the way out of the block, whatever happens in it."""

from __future__ import annotations


class Closing:
    """A mixin: ``__enter__`` returns the object, ``__exit__`` calls its ``close()`` and lets
    any exception through."""

    def close(self) -> None:  # pragma: no cover - every user defines it
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
