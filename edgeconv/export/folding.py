"""Moved to :mod:`edgeconv.ops.folding` (the operators' own inference form, below both
profiling and export); this name stays for existing imports."""

from edgeconv.ops.folding import (fold_model, fold_tvconv, fuse_batchnorm,  # noqa: F401
                                  is_folded)
