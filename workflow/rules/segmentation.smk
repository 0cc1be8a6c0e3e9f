# Semantic segmentation with mmsegmentation (Table 2 left).
# Appends its final outputs to TARGETS (and figure/table outputs to FIGURE_TARGETS).
