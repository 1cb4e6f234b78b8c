"""The engine every stage shares: the one training loop, tracking, atomic file io, the error types."""
