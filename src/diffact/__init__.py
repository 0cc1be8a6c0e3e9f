"""diffact: a reproducible workspace for Meng et al., "Not All Diffusion Model Activations Have Been
Evaluated as Discriminative Features" (NeurIPS 2024, arXiv 2410.03558)."""

__version__ = "0.1.0"
