"""adamdist: the distribution of adaptive-gradient updates.

Companion package to Zhang & Liu, "On the Distributional Properties of
Adaptive Gradients". One module, one idea:

``theory``       closed forms of the paper's sections 3-4
``exact``        numerically exact laws beyond the paper (EMA, momentum, ...)
``simulate``     Monte Carlo of optimizer recursions on synthetic gradients
``capture``      hooks that record the updates of a live ``torch.optim`` optimizer
``results``      the tidy result type shared by ``simulate`` and ``capture``
``optim``        optimizers as other libraries ship them (fairseq's Adam)
``verdict``      the book's rule for "the law holds"
``diagnosis``    which of the paper's causes explains a deviation (``adamdist.diagnose``)

Modules that need torch are imported on demand, so ``import adamdist`` and
``adamdist.theory`` work without it.
"""

from ._lazy import lazy_exports

__version__ = "0.1.0"

__getattr__ = lazy_exports(__name__, {"diagnose": "diagnosis", "Diagnosis": "diagnosis"})
