"""Optional dependencies: a missing one is an ImportError that names the extra to install.

``pip install adamdist`` brings numpy, scipy, pandas and tqdm: enough for ``theory``,
``exact``, ``results`` and ``verdict``. torch (``simulate``, ``capture``, ``optim``) and
altair (``plots``) come with the extras ``adamdist[torch]`` and ``adamdist[plots]``.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, needed_by: str) -> ModuleType:
    """Import ``module`` or raise an ImportError naming ``needed_by`` and the extra that installs it.

    Examples
    --------
    >>> require("math", "none", "this example").pi > 3
    True
    >>> require("no_such_module_here", "torch", "adamdist.capture")
    Traceback (most recent call last):
    ...
    ImportError: adamdist.capture needs no_such_module_here, which is not installed: pip install "adamdist[torch]"
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f'{needed_by} needs {module}, which is not installed: pip install "adamdist[{extra}]"',
                          name=module) from err
