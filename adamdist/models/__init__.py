"""Models of the paper's experiments, in plain ``torch.nn``.

Vision models (CIFAR-10 variants for 32x32 inputs, the MNIST CNN) live in
``adamdist.models.vision``; fairseq's IWSLT14 transformer in
``adamdist.models.transformer``. Names are re-exported here lazily.
"""

from .._lazy import lazy_exports

__getattr__ = lazy_exports(__name__, {
    "regnetx_200mf": "vision",
    "vision_model": "vision",
    "mnist_cnn": "vision",
    "TransformerIWSLT": "transformer",
    "transformer_iwslt_de_en": "transformer",
})
