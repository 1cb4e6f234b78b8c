"""Base data: fetch the IDX files, decode them once into tensors, and load the splits back."""
