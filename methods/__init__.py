"""FER methods as timm models. Importing this package registers every model with timm."""
from __future__ import annotations

import importlib

# One module per method family; each registers its models with timm on import.
_FAMILIES = ("apvit", "faceid", "mae", "nr", "pfvit", "transfer")

for _name in _FAMILIES:
    importlib.import_module(f"{__name__}.{_name}")
