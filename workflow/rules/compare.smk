# Quantitative comparison: per-activation ranking (Tables 4-6 analogues), composition, Table 3.
# Appends its final outputs to TARGETS (and figure/table outputs to FIGURE_TARGETS).
