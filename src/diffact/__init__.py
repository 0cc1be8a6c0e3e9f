"""diffact: a reproducible workspace for Meng et al., "Not All Diffusion Model Activations Have Been
Evaluated as Discriminative Features" (NeurIPS 2024, arXiv 2410.03558).

The Python API (:mod:`diffact.api`): ``diffact.FeatureExtractor.from_pretrained(source, layers=...)`` and
``diffact.list_activations(source)``; imported on first use, so ``import diffact`` (and the CLI) stays cheap.
"""

__version__ = "0.1.0"
__all__ = ["FeatureExtractor", "list_activations"]


def __getattr__(name):
    if name in __all__:
        from diffact import api

        return getattr(api, name)
    raise AttributeError(f"module 'diffact' has no attribute {name!r}")
