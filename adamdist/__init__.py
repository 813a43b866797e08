"""adamdist: the distribution of adaptive-gradient updates.

Companion package to Zhang & Liu, "On the Distributional Properties of
Adaptive Gradients". One module, one idea:

``theory``       closed forms of the paper's sections 3-4
``exact``        numerically exact laws beyond the paper (EMA, momentum, ...)
``simulate``     Monte Carlo of optimizer recursions on synthetic gradients
``capture``      hooks that record the updates of a live ``torch.optim`` optimizer
``results``      the tidy result type shared by ``simulate`` and ``capture``
``optim``        optimizers as other libraries ship them (fairseq's Adam)

Modules that need torch are imported on demand, so ``import adamdist`` and
``adamdist.theory`` work without it.
"""

__version__ = "0.1.0"
