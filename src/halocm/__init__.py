"""halocm: paint baryons onto dark-matter halos with consistency models.

import halocm
gen = halocm.load_model("models/consistency.pt")
maps = gen.sample(condition, params, n_steps=1, n_realizations=4, seed=0)
"""

__version__ = "0.1.0"
__all__ = ["Generator", "load_model"]


def __getattr__(name: str):
    # Lazy: `import halocm` (and the CLI's start-up) need not import torch.
    if name in __all__:
        from halocm import api

        return getattr(api, name)
    raise AttributeError(f"module 'halocm' has no attribute {name!r}")
