"""mIoU, split statistics, ensemble voting and early stopping against hand-computed numbers."""

import numpy as np
import pytest
import torch

from diffact.tasks.scarce.ensemble import EarlyStop, StackedMLP, hidden_sizes, single_mlp, vote
from diffact.tasks.scarce.metrics import class_ious, confusion_matrix, mean_and_std, mean_iou

# gt/pred of 7 pixels, K = 3, two ignored (255) ground-truth pixels.
GT = np.array([0, 0, 1, 1, 2, 255, 255])
PRED = np.array([0, 1, 1, 1, 0, 2, 0])


def test_confusion_matrix_puts_ignored_pixels_in_the_extra_row():
    conf = confusion_matrix(PRED, GT, num_classes=3)
    expected = np.array([[1, 1, 0],   # gt 0: one right, one predicted 1
                         [0, 2, 0],   # gt 1: both right
                         [1, 0, 0],   # gt 2: predicted 0
                         [1, 0, 1]])  # gt 255: predicted 0 and 2
    np.testing.assert_array_equal(conf, expected)


def test_miou_follows_ddpmseg_compute_iou():
    # DDPM-seg: U_c = |pred==c or gt==c| over all pixels (ignored ones too), I_c = |pred==c and gt==c|.
    # class 0: pred {0,4,6} ∪ gt {0,1} = 4, I = 1 → 1/4; class 1: pred {1,2,3} ∪ gt {2,3} = 3, I = 2 → 2/3;
    # class 2: pred {5} ∪ gt {4} = 2, I = 0 → 0.
    conf = confusion_matrix(PRED, GT, 3)
    np.testing.assert_allclose(class_ious(conf), [1 / 4, 2 / 3, 0.0], rtol=1e-6)
    assert mean_iou(conf) == pytest.approx(100 * (1 / 4 + 2 / 3 + 0) / 3, rel=1e-6)


def test_miou_can_drop_ignored_pixels_from_unions():
    # Without the ignored row: class 0 U = 2 + 2 - 1 = 3 → 1/3; class 1 unchanged 2/3; class 2 U = 1 → 0.
    conf = confusion_matrix(PRED, GT, 3)
    assert mean_iou(conf, ignored_pixels="drop") == pytest.approx(100 * (1 / 3 + 2 / 3) / 3, rel=1e-6)


def test_absent_classes_count_as_zero_like_ddpmseg_or_are_skipped():
    conf = confusion_matrix(PRED, GT, 4)  # class 3 never occurs in gt nor prediction
    assert mean_iou(conf, absent="zero") == pytest.approx(100 * (1 / 4 + 2 / 3) / 4, rel=1e-6)
    assert mean_iou(conf, absent="skip") == pytest.approx(100 * (1 / 4 + 2 / 3) / 3, rel=1e-6)
    assert np.isnan(class_ious(conf, absent="skip")[3])


def test_ignore_label_inside_the_class_range_is_left_out():
    # DDPM-seg's own Bedroom-28 config ignores class 0. class 1: pred {0,1} ∪ gt {1,2} = 3, I = 1;
    # class 2: pred {2,3} ∪ gt {3} = 2, I = 1.
    conf = confusion_matrix(np.array([1, 1, 2, 2]), np.array([0, 1, 1, 2]), 3, ignore_label=0)
    assert mean_iou(conf, ignore_label=0) == pytest.approx(100 * (1 / 3 + 1 / 2) / 2, rel=1e-6)


def test_confusion_accumulates_over_images():
    a = confusion_matrix(PRED[:4], GT[:4], 3)
    b = confusion_matrix(PRED[4:], GT[4:], 3)
    np.testing.assert_array_equal(a + b, confusion_matrix(PRED, GT, 3))


def test_mean_and_sample_std_over_splits():
    mean, std = mean_and_std([60.0, 62.0, 64.0, 66.0, 68.0])
    assert mean == pytest.approx(64.0)
    assert std == pytest.approx(np.sqrt(40 / 4))  # sample std: Σ(x−64)² = 40, n−1 = 4
    assert mean_and_std([60.0, 62.0, 64.0, 66.0, 68.0], ddof=0)[1] == pytest.approx(np.sqrt(8))
    assert mean_and_std([61.5]) == (61.5, 0.0)


def test_vote_is_the_mode_with_ties_to_the_smallest_class():
    members = torch.tensor([[0, 1, 2, 2], [0, 2, 1, 2], [1, 2, 0, 1]])
    assert vote(members, 3).tolist() == [0, 2, 0, 2]


def test_early_stop_waits_for_epoch_4_then_counts_non_improving_batches():
    stop = EarlyStop(1, after_epoch=3, patience=2)
    for epoch in range(4):  # epochs 0..3: never tracked (DDPM-seg "if epoch > 3")
        for loss in (5.0, 6.0, 7.0, 8.0):
            assert not stop.update(epoch, [loss]).any()
    events = [stop.update(4, [loss])[0] for loss in (1.0, 1.1, 1.2, 0.9, 1.0, 1.0, 1.0)]
    # best 1.0 → two worse (count 2, not > 2) → 0.9 resets → three worse: stops on the third.
    assert events == [False, False, False, False, False, False, True]
    assert stop.stopped.all()


def test_early_stop_paper_patience_is_51_batches():
    stop = EarlyStop(2)
    stop.update(4, [1.0, 1.0])
    for i in range(50):
        assert not stop.update(4, [1.0, 0.5 - i * 1e-3]).any()
    assert stop.update(4, [1.0, 0.0]).tolist() == [True, False]


def test_stacked_members_equal_the_upstream_module():
    torch.manual_seed(0)
    model = StackedMLP(3, 5, 4)
    model.init_weights(seed=1)
    x = torch.randn(3, 16, 5)
    model.train()
    out = model(x)
    model.eval()
    out_eval = model(x)
    for m in range(3):
        seq = model.member(m)
        seq.train()
        fresh = single_mlp(5, 4)
        fresh.load_state_dict(seq.state_dict())
        fresh.train()
        torch.testing.assert_close(fresh(x[m]), out[m], rtol=1e-5, atol=1e-5)
        fresh.load_state_dict(model.member(m).state_dict())  # running stats updated by the train pass
        fresh.eval()
        torch.testing.assert_close(fresh(x[m]), out_eval[m], rtol=1e-5, atol=1e-5)


def test_init_and_widths_follow_ddpmseg():
    assert hidden_sizes(29) == (128, 32) and hidden_sizes(30) == (256, 128)
    model = StackedMLP(2, 400, 21)
    model.init_weights(seed=0)
    w = model.fc1.weight.detach()
    assert abs(w.std().item() - 0.02) < 0.001 and model.fc1.bias.abs().max() == 0
    assert not torch.equal(w[0], w[1])  # members start from different draws
    again = StackedMLP(2, 400, 21)
    again.init_weights(seed=0)
    assert torch.equal(again.fc1.weight, model.fc1.weight)
