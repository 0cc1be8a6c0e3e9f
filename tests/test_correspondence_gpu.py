"""The aggregation and matching give the same answers on a GPU as on the CPU (skipped without CUDA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffact.tasks.correspondence.aggregation import AggregationTrainSettings, evaluate, train_aggregation
from diffact.tasks.correspondence.matching import nn_transfer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_nn_transfer_on_cuda_matches_cpu():
    g = torch.Generator().manual_seed(0)
    src, trg = torch.randn(16, 12, 12, generator=g), torch.randn(16, 9, 9, generator=g)
    kps = np.array([[3.0, 4.0], [20.0, 10.0], [np.nan, np.nan], [39.0, 29.0]])
    cpu = nn_transfer(src, trg, kps, (40, 30), (50, 20), eval_size=64)
    gpu = nn_transfer(src.cuda(), trg.cuda(), kps, (40, 30), (50, 20), eval_size=64)
    assert np.allclose(cpu, gpu, equal_nan=True)


def test_training_on_cuda_reaches_the_cpu_result():
    from test_aggregation import GRID, constructed_dataset

    pairs, features_of = constructed_dataset()
    settings = AggregationTrainSettings(epochs=2, pairs_per_epoch=20, eval_every=10, lr=0.02, seed=0, feature_size=GRID, eval_size=GRID)
    scores = {}
    for device in ("cpu", "cuda"):
        on_device = lambda pair, d=device: tuple(t.to(d) for t in features_of(pair))  # noqa: E731
        network, evaluations, _ = train_aggregation(pairs, on_device, pairs, on_device, 12, settings, device=device)
        scores[device] = evaluate(pairs, on_device, network, GRID)["pck_img@0.10"]
        assert next(network.parameters()).device.type == device
    assert scores["cuda"] == scores["cpu"] == 100.0
