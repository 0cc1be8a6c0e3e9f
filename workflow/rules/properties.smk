# The three universal properties (issue: properties): analyses, numbers, figures.
# Appends its final outputs to TARGETS (and figure/table outputs to FIGURE_TARGETS).
