"""adamdist where people train and look at results.

* :mod:`adamdist.integrations.lightning`: ``UpdateDistributionCallback`` for PyTorch Lightning
  (extra ``adamdist[lightning]``);
* :mod:`adamdist.integrations.hf`: ``UpdateDistributionCallback`` for the Hugging Face
  ``transformers.Trainer`` (extra ``adamdist[hf]``);
* :mod:`adamdist.integrations.tensorboard`: :func:`~adamdist.integrations.tensorboard.to_tensorboard`
  (extra ``adamdist[tensorboard]``), also as ``UpdateStats.to_tensorboard``;
* :mod:`adamdist.integrations.wandb`: :func:`~adamdist.integrations.wandb.to_wandb`
  (extra ``adamdist[wandb]``), also as ``UpdateStats.to_wandb``.

Each module imports its framework when it is imported; without the extra that is an
``ImportError`` naming the extra to install.
"""
