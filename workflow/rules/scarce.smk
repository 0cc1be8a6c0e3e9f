# Label-scarce segmentation (pixel-classifier ensemble, DDPM-seg protocol).
# Appends its final outputs to TARGETS (and figure/table outputs to FIGURE_TARGETS).
