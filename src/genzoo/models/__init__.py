"""The models of the zoo: one file per paper, the registry (registry.py) and the contract (base.py)."""
