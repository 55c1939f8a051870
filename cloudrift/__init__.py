"""cloudrift: one async interface per cloud service category.

Importing this package imports no SDK: each category lives in its own
subpackage (``cloudrift.storage``, ``cloudrift.messaging``, ``cloudrift.document``,
``cloudrift.cache``, ``cloudrift.email``, ``cloudrift.kv``) and each provider
imports its SDK only when it is chosen.
"""

from cloudrift._version import __version__

__all__ = ["__version__"]
