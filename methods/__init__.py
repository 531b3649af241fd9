"""FER methods as timm models. Importing this package registers every model with timm: the
built-in families below, then each family an installed package announces in the
``ferbench.methods`` entry-point group (a method plugin; see docs/adding-a-method.md).

:data:`FAMILIES` maps each family's name to its module, built-in ones first.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points

PLUGIN_GROUP = "ferbench.methods"
# One module per method family; each registers its models with timm on import.
_BUILT_IN = ("apvit", "faceid", "mae", "nr", "pfvit", "transfer")

FAMILIES: dict[str, str] = {}
for _name in _BUILT_IN:
    FAMILIES[_name] = importlib.import_module(f"{__name__}.{_name}").__name__


def _load_plugins() -> None:
    """Import each announced family (``name = "package.module"``); a broken one names itself."""
    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        origin = f"method plugin {ep.name!r} ({ep.value}" + (f", package {ep.dist.name})" if ep.dist else ")")
        if ep.name in FAMILIES:
            raise ImportError(f"{origin}: the family name {ep.name!r} is taken by {FAMILIES[ep.name]}")
        try:
            module = ep.load()
        except Exception as err:  # any failure of a third party's import: say whose it is
            raise ImportError(f"{origin} failed to import: {type(err).__name__}: {err}") from err
        FAMILIES[ep.name] = module.__name__


_load_plugins()
