"""crmscore: churn, lead and lifetime-value scoring from CRM data.

Importing the package has no side effects: no folders are created, no logging is
configured and no tracking URI is set. Everything happens inside the functions the
CLI (``crmscore.cli``) calls.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
