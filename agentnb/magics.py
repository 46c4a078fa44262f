"""``agentnb.magics``, the name IPython configurations load (``extensions =
["agentnb.magics"]``): the magics themselves live in :mod:`agentnb.jupyter.magics`."""

from .jupyter.magics import load_ipython_extension, unload_ipython_extension

__all__ = ["load_ipython_extension", "unload_ipython_extension"]
