"""Dataset top-k index: one streaming pass for the heaps, a second for patch maps."""
