"""Experiments of the paper's section 5, each a config dataclass and ``run(config)``.

Shared machinery (profiles, the on-disk result cache, device choice) is in
:mod:`adamdist.experiments.common`; the vision experiments in
``adamdist.experiments.vision``, the transformer in
``adamdist.experiments.transformer``.
"""

from .common import cached, config_hash, default_device, profile

__all__ = ["cached", "config_hash", "default_device", "profile"]
