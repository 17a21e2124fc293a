"""Model workers: the ``Worker`` protocol, the in-process transformers worker, the remote client."""
