"""The protocol switch (paper §2.8, docs/paper.md §4): `paper` = max over checkpoints on val, taken per metric;
`heldout` = the checkpoint selected on val, reported once on test."""

from __future__ import annotations

import pandas as pd
import pytest

from diffact.tasks.correspondence.protocol import (
    evaluation_split,
    heldout_result,
    paper_result,
    select_checkpoint,
)
from diffact.utils.errors import ConfigError, DataError

# Validation scores of three checkpoints. The img maximum (60) is reached at steps 50 and 75, the bbox
# maximum (35) at step 75; the test scores peak at step 25, which a clean protocol must not see.
EVALUATIONS = pd.DataFrame({
    "step": [75, 25, 50],  # unsorted on purpose
    "pck_img@0.10": [60.0, 40.0, 60.0],
    "pck_bbox@0.10": [35.0, 30.0, 20.0],
    "n_pairs": [6, 6, 6],
    "n_keypoints": [40, 40, 40],
    "checkpoint": ["step_000075.safetensors", "step_000025.safetensors", "step_000050.safetensors"],
})
TEST_SCORES = {25: {"pck_img@0.10": 90.0, "pck_bbox@0.10": 80.0},
               50: {"pck_img@0.10": 55.0, "pck_bbox@0.10": 45.0},
               75: {"pck_img@0.10": 52.0, "pck_bbox@0.10": 47.0}}


def test_paper_protocol_takes_each_metrics_maximum_over_checkpoints():
    result = paper_result(EVALUATIONS)
    assert result["pck_img@0.10"] == 60.0 and result["step_pck_img@0.10"] == 50  # earliest of the tie
    assert result["pck_bbox@0.10"] == 35.0 and result["step_pck_bbox@0.10"] == 75  # another checkpoint
    assert result["n_checkpoints"] == 3 and result["n_keypoints"] == 40


def test_heldout_protocol_reports_the_val_selected_checkpoint_on_test_once():
    calls = []

    def test_scores(selected):
        calls.append(int(selected["step"]))
        return TEST_SCORES[int(selected["step"])]

    result = heldout_result(EVALUATIONS, test_scores, "pck_img@0.10")
    assert calls == [50]  # one test evaluation, of the selected checkpoint
    assert result["step"] == 50 and result["pck_img@0.10"] == 55.0 and result["pck_bbox@0.10"] == 45.0
    assert result["val_pck_img@0.10"] == 60.0 and result["selected_by"] == "pck_img@0.10"
    # Selecting by bbox picks step 75 and reports its test numbers, not the test maximum (step 25).
    by_bbox = heldout_result(EVALUATIONS, lambda row: TEST_SCORES[int(row["step"])], "pck_bbox@0.10")
    assert by_bbox["step"] == 75 and by_bbox["pck_img@0.10"] == 52.0


def test_selection_and_errors():
    assert select_checkpoint(EVALUATIONS, "pck_img@0.10")["checkpoint"] == "step_000050.safetensors"
    assert evaluation_split("paper") == "val" and evaluation_split("heldout") == "test"
    with pytest.raises(ConfigError):
        evaluation_split("best")
    with pytest.raises(ConfigError, match="pck_img@0.20"):
        select_checkpoint(EVALUATIONS, "pck_img@0.20")
    with pytest.raises(DataError, match="run/evaluations.csv"):
        paper_result(EVALUATIONS.iloc[:0], where="run/evaluations.csv")
