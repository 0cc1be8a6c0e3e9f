"""The pinned environment: mmcv 2.1.0 built with its compiled ops, mmseg importable, no torchvision."""

import sys


def test_mmcv_has_compiled_ops_and_mmseg_imports():
    import mmcv
    import mmcv._ext  # noqa: F401 - absent in mmcv-lite or in a wheel built with build isolation
    import mmseg
    from mmseg.utils import register_all_modules

    register_all_modules()
    assert mmcv.__version__ == "2.1.0" and mmseg.__version__ == "1.2.2"


def test_torchvision_is_not_needed():
    import diffact.extract.pipeline  # noqa: F401
    import diffact.tasks.correspondence.matching  # noqa: F401

    assert "torchvision" not in sys.modules
