"""Published numbers shipped with the package (``src/diffact/data/reference/*.csv``), read without network
or access to anything outside the installed package."""

from __future__ import annotations

from importlib import resources

PAPER_TABLES_4_6 = "paper_tables_4_6.csv"


def paper_tables_4_6():
    """Appendix Tables 4–6 of the paper (arXiv 2410.03558, App. D.2), all 96 rows verbatim, as a DataFrame.

    Columns: ``table`` (4 = SDXL/PGv2 up-level0, 5 = SDXL/PGv2 up-level1, 6 = SDv1.5), ``activation_id``,
    ``sdxl_or_sd15_simple``, ``sdxl_or_sd15_complex``, ``pgv2_simple``, ``pgv2_complex`` (label-scarce mIoU
    in %, one activation alone; simple = Horse-21, complex = Bedroom-28; the PGv2 columns are empty in Table 6).
    """
    import pandas as pd

    source = resources.files("diffact.data").joinpath("reference", PAPER_TABLES_4_6)
    with resources.as_file(source) as path:
        return pd.read_csv(path, comment="#")
