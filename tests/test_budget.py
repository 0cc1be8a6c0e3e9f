"""`diffact budget` (src/diffact/budget.py): the plan of a profile, its totals, forward passes counted by hand on a
small configuration, "not measured" for models the benchmark lacks, the one-line error of a bad --bench, the
checkpoint-size formula against mmseg's heads, and benchmarks/bench_paper_scale.py on the demo architectures."""

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diffact import budget as bd
from diffact.tasks.scarce.settings import ScarceConfig
from diffact.utils.args import default_of

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config" / "paper.yaml"
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ")
# Jobs per rule of the paper DAG, as `snakemake -n` counts them on fixture trees (tests/test_paper_profile.py,
# PAPER_JOBS; segmentation counted from config/paper.yaml: 2 datasets × (2 models × 2 sets + Ours-XL-t)).
PAPER_DAG_JOBS = {
    "extract_shard": 32, "extract": 8, "scarce_filtered_store": 6, "pck_screen": 7, "pck_pixels": 1, "pck_table": 1,
    "practical_screen": 3, "practical_set": 3, "practical_nn": 3, "practical_table": 1,
    "corr_train": 5, "corr_evaluate": 20, "corr_table1": 1, "noise_share": 14, "property_maps": 14, "control_property_maps": 2, "pca_maps": 1,
    "properties_table": 8, "fig_properties_unet_vs_dit": 1, "fig02_architecture": 4, "qualitative_filter": 2, "train_control_unet": 1, "control_features": 2,
    "properties_unavailable": 1, "scarce_set": 7, "scarce_filter": 3, "scarce_screen": 6, "scarce_compare": 3,
    "scarce_table3_run": 6, "fig03_properties": 4, "fig04_pck": 4, "fig05_13_scenes": 4, "fig16_18_within": 4,
    "fig15_control": 1, "fig03_pca": 1, "fig_demo_nn_pck": 1, "table1_notebook": 1, "fig01_notebook": 1,
    "fig_properties_numbers": 1, "fig_properties_filter": 1, "table2_right_notebook": 1, "table4_6_notebook": 3,
    "table3_notebook": 1, "seg_train": 10, "seg_baseline": 2,
}
SMALL_SIZES = {
    "spair": {"source": "test", "categories": 18, "images_total": 40,
              "splits": {"trn": {"pairs": 30, "images": 10, "exact": True, "note": "test"},
                         "val": {"pairs": 9, "images": 6, "exact": True, "note": "test"},
                         "test": {"pairs": 12, "images": 8, "exact": True, "note": "test"}},
              "subsets": {"val-360": {"pairs": 2, "images": 4, "exact": True, "note": "test"},
                          "test-90": {"pairs": 2, "images": 3, "exact": True, "note": "test"}}},
    "ddpmseg": {"horse_21": {"train": 2, "test": 2, "exact": True, "source": "test"},
                "bedroom_28": {"train": 3, "test": 1, "exact": True, "source": "test"}},
    "ade20k": {"source": "test", "exact": True, "training": 5, "validation": 2,
               "val_image_size": {"width": 640, "height": 480, "exact": True, "note": "test"}},
    "cityscapes": {"source": "test", "exact": True, "train": 4, "val": 1,
                   "val_image_size": {"width": 2048, "height": 1024, "exact": True, "note": "test"}},
}


def paper_config():
    return yaml.safe_load(PAPER.read_text())


def bench_data(**models):
    """A benchmark file holding ``name=(image_size, seconds per pass, peak RSS)`` entries."""
    sources = {"sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5", "sd21": "stabilityai/stable-diffusion-2-1-base",
               "sdxl": "stabilityai/stable-diffusion-xl-base-1.0", "pgv2": "playgroundai/playground-v2-1024px-aesthetic"}
    return {"date": "2026-01-01", "dtype": "float32", "machine": {"device_name": "test cpu"},
            "models": {name: {"source": sources[name], "image_size": size, "storage_dtype": "float16", "quick": False,
                              "forward": {"seconds_per_forward": seconds, "peak_rss_bytes": rss}, "layer_sets": {}}
                       for name, (size, seconds, rss) in models.items()}}


@pytest.fixture(scope="module")
def paper_budget(tmp_path_factory):
    """The budget of config/paper.yaml with the published sizes, run where no dataset root exists."""
    import os

    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("nowhere"))
    try:
        return bd.compute_budget(paper_config(), bench=bench_data(sd15=(512, 2.0, 4 * 10**9)),
                                 config_path=str(PAPER))
    finally:
        os.chdir(here)


def test_paper_budget_has_the_totals_and_they_are_the_sums_of_the_stages(paper_budget):
    total, stages = paper_budget["total"], paper_budget["stages"]
    for key in ("disk_bytes", "forward_passes", "peak_rss_bytes", "jobs", "training_iterations", "images"):
        assert key in total
    for key in ("disk_bytes", "forward_passes", "jobs", "training_iterations", "images", "gpu_jobs"):
        assert total[key] == sum(s[key] for s in stages), key
    assert total["peak_rss_bytes"] == max(s["peak_rss_bytes"] for s in stages if s["peak_rss_bytes"] is not None)
    by_model = {}
    for stage in stages:
        for key, n in stage["forward_passes_by_model"].items():
            by_model[key] = by_model.get(key, 0) + n
    assert by_model == total["forward_passes_by_model"]
    assert set(by_model) == {"sd15@512px", "sd21@512px", "sdxl@1024px", "pgv2@1024px",
                             "pixart-sigma@1024px", "sd3-medium@1024px", "flux-dev@1024px"}
    # disk = bytes per image × images, store by store, plus the checkpoints of the training stages
    stores = paper_budget["stores"]
    extract = next(s for s in stages if s["name"] == "extract")
    assert extract["disk_bytes"] == sum(s["bytes_per_image"] * s["images"] for s in stores)
    assert len(stores) == 14  # Table 2 (right)'s 8, extracted in shards + the label-scarce screens' 6 filtered stores
    assert extract["forward_passes"] == sum(s["images"] for s in stores)
    # the property maps and Fig 3's PCA maps stream (issue #19 point 3) and the label-scarce screens read filtered
    # stores: no pool or figure store of the property scenes is planned
    assert not [s for s in stores if s["layer_set"] == "figure"]
    assert not [s for s in stores if s["dataset"] in ("horse21", "bedroom28") and s["layer_set"] == "pool"]
    # Table 1 streams its features (noise: stream): no store of its trn, val or test split
    assert not [s for s in stores if s["dataset"].startswith(("spair-trn", "spair-val")) or s["dataset"] == "spair"]


def test_paper_budget_jobs_match_the_dag(paper_budget):
    jobs = {}
    for stage in paper_budget["stages"]:
        jobs.update(stage["jobs_by_rule"])
    assert {rule: jobs.get(rule) for rule in PAPER_DAG_JOBS} == PAPER_DAG_JOBS


def test_paper_budget_records_where_every_count_comes_from(paper_budget):
    datasets = paper_budget["datasets"]
    assert datasets["ade20k:training"] == {"images": 20210, "source": datasets["ade20k:training"]["source"], "exact": True}
    assert datasets["cityscapes:val"]["images"] == 500
    assert datasets["horse21"]["images"] == 50 and not datasets["horse21"]["exact"]
    assert datasets["spair-screen"]["images"] == 180 and "upper bound" in datasets["spair-screen"]["source"]
    # Table 1 streams (noise: stream): its passes follow the val-360 / test-360 pair counts, no store's images
    table1 = next(s for s in paper_budget["stages"] if s["name"] == "table1")
    assert any("2 × 360 val pairs × 19 validations" in n and "2 × 360 test pairs × 2 heldout" in n
               for n in table1["notes"]), table1["notes"]
    assert all(c["source"] for c in datasets.values())


def test_paper_store_bytes_follow_the_layer_shapes(paper_budget):
    stores = {(s["dataset"], s["model"], s["layer_set"]): s for s in paper_budget["stores"]}
    sdxl_practical = stores[("horse21", "sdxl", "practical")]  # Table 2 (right); Table 1 streams
    # Ours-XL at 1024 px: 2 × 1280 @ 32² (up-level0 blocks) + 640 @ 64² (cross-q) + 640 @ 64² (block0-out), fp16
    tensors = 2 * (2 * 1280 * 32 * 32 + 2 * 640 * 64 * 64)
    assert tensors < sdxl_practical["bytes_per_image"] < tensors + 4096
    assert sdxl_practical["channels"] == 3840
    # the SDXL candidate pool at 1024 px: the docs' 1.4 GB per image (no such store is planned any more: the property
    # maps stream it, issue #19)
    shapes = bd.set_shapes(paper_config(), "sdxl", "pool", 1024)
    assert 1.3e9 < bd.shard_bytes(shapes, "float16")["shard_bytes"] < 1.5e9
    # the label-scarce screens read stores of the filtered activations (+ Table 3's paper-generic Ours-XL), not
    # the pool: SDXL 63 of 279 activations, 225 MB instead of 1.45 GB per 1024-px image
    filtered = {(d, m): s for (d, m, name), s in stores.items() if name == "filtered"}
    assert set(filtered) == {(d, m) for d in ("horse21", "bedroom28") for m in ("sd15", "sdxl", "pgv2")}
    assert filtered[("horse21", "sdxl")]["layers"] == 63 and 2.2e8 < filtered[("horse21", "sdxl")]["bytes_per_image"] < 2.3e8
    assert filtered[("bedroom28", "sd15")]["layers"] == 33
    # the NN screens and practical_nn stream: no pool store of the screening splits (the DiTs' was 2.05 TB)
    assert not [(d, m) for d, m, s in stores if d in ("spair-screen", "spair-val-screen")]



def test_paper_segmentation_keeps_one_checkpoint_per_run(paper_budget):
    """Every paper mmseg run keeps only its latest checkpoint (what --resume needs; the results come from the
    validation history): mmengine's default kept all 10 of 80k / 8000, 354 GB over the profile's 10 runs."""
    from diffact.workflow import segmentation as segplan

    config = paper_config()
    runs = list(segplan.runs(config))
    runs += [(d, segplan.COMBINED, n) for d in segplan.datasets(config) for n in segplan.combined(config)]
    for dataset, model, layer_set in runs:
        schedule = bd.seg_schedule(config, dataset, model, layer_set)
        assert (schedule["checkpoints_written"], schedule["checkpoints"]) == (10, 1), (dataset, model, layer_set)
    segmentation = next(s for s in paper_budget["stages"] if s["name"] == "segmentation")
    # 10 runs × one checkpoint, the final one: weights only (0.4-2.9 GB), without AdamW's moments (FinalCheckpointHook)
    finals = [bd.segmentor_trainable(config, segplan.run_parts(config, m, ls),
                                     bd.seg_schedule(config, d, m, ls)["num_classes"],
                                     bd.seg_schedule(config, d, m, ls)["head_channels"]) for d, m, ls in runs]
    assert segmentation["disk_bytes"] == sum(f["final_checkpoint_bytes"] for f in finals)
    assert all(f["checkpoint_bytes"] - f["final_checkpoint_bytes"] == 2 * 4 * f["params"] for f in finals)  # the moments
    assert segmentation["disk_bytes"] < 13e9


def small_config():
    """config/paper.yaml with a 10-iteration segmentation schedule (counts come from SMALL_SIZES)."""
    config = copy.deepcopy(paper_config())
    config["segmentation"]["iters"] = 10
    return config


def test_forward_passes_of_a_small_config_match_a_hand_count(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no dataset root exists: every count comes from SMALL_SIZES
    budget = bd.compute_budget(small_config(), bench=None, sizes=SMALL_SIZES)
    spair_screen, horse, bedroom = 3, 4, 4  # SMALL_SIZES (Table 1's splits stream: their counts do not enter)
    assert small_config()["correspondence"]["table1"]["noise"] == "stream"
    # no Table 1 store; per entry part, 2 passes per training step (10,000), per val-360 pair at each of the 19
    # validations and the NN on val, and per test-360 pair for each heldout number (nn, trained)
    table1 = 0
    stream = 2 * 10000 + 2 * 360 * (19 + 1) + 2 * 360 * 2
    parts = {"sd15": 2 + 1, "sdxl": 2 + 1, "pgv2": 0 + 1}  # its Table 1 sets (legacy, practical) + its part of Ours-XL-t
    filtered = horse + bedroom  # the label-scarce screens' stores of the filtered activations, both scenes
    extract = {
        # screening store + Table 1 parts (sd15: legacy, practical, amalgamation) + Table 2 right (+ horse: the SD1.5
        # and PGv2 amalgamation stores of Table 2's Ours-XL-t) + the label-scarce screens' filtered stores
        "sd15": spair_screen + 3 * table1 + 2 * horse + horse + filtered,
        "sd21": spair_screen,
        # + Fig 3 PCA (figure set on horse21, streamed: its first pca_images = 4 images); Table 1: legacy, practical
        "sdxl": spair_screen + 2 * table1 + min(4, horse) + 2 * horse + filtered,
        "pgv2": spair_screen + table1 + 2 * horse + horse + filtered,  # Table 1: amalgamation
    }
    # the DiTs, all streamed: the NN screen + the validation screen that chooses their practical set (val-36 has no
    # count in SMALL_SIZES: the split's 6 images bound it) + practical_nn (the screened images again)
    val_screen = 6
    for dit in ("pixart-sigma", "sd3-medium", "flux-dev"):
        extract[dit] = 2 * spair_screen + val_screen
    properties = horse + bedroom  # the property maps stream min(20, n) images of each scene, every property model
    noise = 4 * (horse + bedroom)  # 4 draws of min(20, n) images per scene
    # seg: 10 iterations × batch 2 + 10 // 10 validations × windows (ADE 2 images × 2, Cityscapes 1 × 3); the
    # final test is the last validation (seg-train reuses it), so no second pass over the windows
    ade, city = 10 * 2 + 1 * 2 * 2, 10 * 2 + 1 * 1 * 3
    seg = {"sd15": 2 * (ade + city), "sdxl": 2 * (ade + city) + (ade + city), "pgv2": ade + city, "sd21": 0,
           "pixart-sigma": 0, "sd3-medium": 0, "flux-dev": 0}
    size = {"sd15": 512, "sd21": 512, "sdxl": 1024, "pgv2": 1024, "pixart-sigma": 1024, "sd3-medium": 1024,
            "flux-dev": 1024}
    expected = {f"{m}@{size[m]}px": extract[m] + noise + properties + seg[m] + parts.get(m, 0) * stream for m in size}
    assert budget["total"]["forward_passes_by_model"] == expected
    assert budget["total"]["forward_passes"] == sum(expected.values())
    stages = {s["name"]: s for s in budget["stages"]}
    assert stages["segmentation"]["training_iterations_by_kind"] == {"mmseg iterations": 10 * 10}
    assert stages["table1"]["training_iterations"] == 5 * 2 * 5000
    # label-scarce bound: splits × 100 epochs × (train images × 256² / 64) steps
    assert stages["scarce_table2"]["training_iterations"] == 7 * 5 * 100 * (2 * 256**2 // 64)  # 6 sets + Ours-XL-t


def test_counts_come_from_disk_when_the_root_exists(tmp_path, monkeypatch, cli):
    assert cli("make-demo-seg", "--kind", "simple", "--out", tmp_path / "horse_21", "--seed", "0", "--size", "32",
               "--train", "3", "--test", "2").returncode == 0
    config = small_config()
    config["datasets"]["horse21"]["root"] = str(tmp_path / "horse_21")
    count = bd.dataset_count(config, "horse21", SMALL_SIZES)
    assert (count.images, count.exact) == (5, True) and count.source.startswith("counted on disk")
    assert bd.dataset_count(config, "horse21", SMALL_SIZES, split="train").images == 3

    # a folder whose name does not say which dataset it is: counted with the entry's `name`, as extraction reads it
    (tmp_path / "horse_21" / "dataset.json").rename(tmp_path / "dataset.json.away")
    (tmp_path / "horse_21").rename(tmp_path / "horses")
    config["datasets"]["horse21"].update(root=str(tmp_path / "horses"), name="horse_21")
    assert bd.dataset_count(config, "horse21", SMALL_SIZES).images == 5


def test_a_model_missing_from_the_bench_is_not_measured(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps(bench_data(sd15=(512, 2.0, 4 * 10**9), sd21=(256, 0.5, 10**9))))
    sizes = tmp_path / "sizes.yaml"
    sizes.write_text(yaml.safe_dump(SMALL_SIZES))
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(small_config()))
    done = cli("budget", "--config", config, "--bench", bench, "--sizes", sizes, "--out", tmp_path / "budget.json")
    assert done.returncode == 0, done.stderr
    assert "not measured" in done.stdout and "| **total** |" in done.stdout
    budget = json.loads((tmp_path / "budget.json").read_text())
    seconds = budget["forward_passes_seconds"]
    assert seconds["sd15@512px"]["seconds"] == pytest.approx(seconds["sd15@512px"]["passes"] * 2.0)
    for key in ("sdxl@1024px", "pgv2@1024px", "sd21@512px"):  # sd21 is in the file, but at 256 px only
        assert seconds[key]["seconds"] is None and seconds[key]["source"].startswith("not measured")
    assert "at 512 px" in seconds["sd21@512px"]["source"]
    assert budget["total"]["unet_seconds"] is None and budget["total"]["unet_seconds_not_measured"]
    extract = next(s for s in budget["stages"] if s["name"] == "extract")
    assert extract["unet_seconds"] is None and extract["peak_rss_bytes"] > 4 * 10**9  # sd15's estimate only
    json_out = cli("budget", "--config", config, "--no-bench", "--sizes", sizes, "--json")
    assert json_out.returncode == 0 and json.loads(json_out.stdout)["total"]["peak_rss_bytes"] is None


def printed_lines(stderr: str) -> list[str]:
    """stderr without the log records (timestamped lines of diffact's logging, which also go to a job's log)."""
    return [line for line in stderr.strip().splitlines() if not LOG_RECORD.match(line)]


def test_a_bad_bench_path_is_one_error_line_and_exit_2(tmp_path, cli):
    done = cli("budget", "--config", PAPER, "--bench", tmp_path / "missing.json")
    assert done.returncode == 2 and done.stdout == ""
    lines = printed_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("diffact budget: error: benchmark file") and "missing.json" in lines[0]
    (tmp_path / "broken.json").write_text("{not json")
    broken = cli("budget", "--config", PAPER, "--bench", tmp_path / "broken.json")
    assert broken.returncode == 2 and len(printed_lines(broken.stderr)) == 1, broken.stderr
    assert "not a readable benchmark file" in broken.stderr


def test_reference_sizes_agree_with_the_loaders():
    from diffact.data import ade20k, cityscapes

    sizes = bd.load_reference_sizes()
    assert {k: sizes["ade20k"][k] for k in ade20k.OFFICIAL_COUNTS} == ade20k.OFFICIAL_COUNTS
    assert {k: sizes["cityscapes"][k] for k in cityscapes.OFFICIAL_COUNTS} == cityscapes.OFFICIAL_COUNTS
    assert sum(sizes["spair"]["splits"][s]["pairs"] for s in ("trn", "val", "test")) == 70958


def test_slide_windows_follow_mmseg():
    assert bd.slide_windows(2048, 1024, (2048, 1024), (1024, 1024), (512, 512)) == 3
    assert bd.slide_windows(640, 480, (2048, 512), (512, 512), (512, 512)) == 2  # resized to 683 × 512
    assert bd.slide_windows(512, 512, (2048, 512), (512, 512), (512, 512)) == 1


def test_checkpoint_parameters_match_the_modules():
    torch = pytest.importorskip("torch")
    pytest.importorskip("mmseg")
    from mmseg.models.decode_heads import FCNHead, UPerHead

    from diffact.tasks.segmentation.blocks import ResBlock

    def count(module):
        params = sum(p.numel() for p in module.parameters())
        buffers = sum(b.numel() for n, b in module.named_buffers() if not n.endswith("num_batches_tracked"))
        return params, buffers

    norm = dict(type="BN", requires_grad=True)
    assert count(ResBlock(12)) == bd.resblock_params(12)
    with torch.no_grad():
        uper = UPerHead(in_channels=[24, 16, 8], in_index=[0, 1, 2], pool_scales=(1, 2, 3), channels=32,
                        num_classes=5, norm_cfg=norm)
        fcn = FCNHead(in_channels=16, in_index=1, channels=32, num_convs=1, concat_input=False, num_classes=5,
                      norm_cfg=norm)
    assert count(uper) == bd.uper_head_params([24, 16, 8], 32, 5)
    assert count(fcn) == bd.fcn_head_params(16, 32, 5)


@pytest.mark.slow
def test_bench_paper_scale_on_the_demo_architectures(tmp_path):
    """The benchmark end to end on the demo's tiny U-Nets (both pipeline classes; amalgamation: the aggregated
    attention maps on SD1.5): every written store agrees with the computed bytes."""
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_paper_scale.py"), "--models",
                           "demo-sd15,demo-sdxl", "--store-sets", "amalgamation", "--threads", "1", "--repeats", "1",
                           "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert {"date", "machine", "dtype", "models"} <= set(result)
    assert {"cpu_count", "torch", "device_name"} <= set(result["machine"])
    for name, entry in result["models"].items():
        forward = entry["forward"]
        assert forward["seconds_per_forward"] > 0 and forward["peak_rss_bytes"] > 0 and entry["load_path"]
        written = {s: e["measured"] for s, e in entry["layer_sets"].items() if "measured" in e}
        assert set(written) == {"amalgamation"}, name
        for layer_set, measured in written.items():
            computed = entry["layer_sets"][layer_set]
            assert measured["agrees"], (name, layer_set)
            assert measured["tensor_bytes"] == computed["tensor_bytes"]
            assert abs(measured["shard_bytes"] - computed["shard_bytes"]) <= 64, (name, layer_set)
    assert result["models"]["demo-sd15"]["layer_sets"]["amalgamation"]["activations"] == 5  # 4 + attn-up-cross
    assert out.with_suffix(".md").is_file()
    loaded = bd.Bench(bd.load_bench(out))
    assert loaded.data["models"]["demo-sd15"]["image_size"] == 64


def test_label_scarce_peak_rss_comes_from_the_paper_scale_benchmark_beside_the_bench_file(tmp_path, monkeypatch):
    """benchmarks/bench_scarce_memory.py --paper-scale writes scarce_memory_paper.json; the budget reports its peak
    for the label-scarce stages when it ran with the profile's stream buffer, and 'not measured' otherwise."""
    monkeypatch.chdir(tmp_path)
    bench = tmp_path / "paper_scale.json"
    bench.write_text(json.dumps(bench_data(sd15=(512, 2.0, 4 * 10**9))))
    config = small_config()
    buffer_mb = config["scarce"]["protocol"]["buffer_mb"]

    def scarce_stages(buffer):
        (tmp_path / bd.SCARCE_BENCH_NAME).write_text(json.dumps({
            "n_train": 30, "size": 256, "channels": 3840, "peak_rss_bytes": 4_460_064_768, "measured": "2026-12-02",
            "protocol": {"members": 10, "buffer_mb": buffer}}))
        budget = bd.compute_budget(config, bench=json.loads(bench.read_text()), sizes=SMALL_SIZES,
                                   bench_path=str(bench))
        return [s for s in budget["stages"] if s["name"].startswith("scarce")]

    for stage in scarce_stages(buffer_mb):
        assert stage["peak_rss_bytes"] == 4_460_064_768 and "3840 channels" in stage["peak_rss_source"]
    for stage in scarce_stages(buffer_mb / 2):  # another buffer: another memory bound
        assert stage["peak_rss_bytes"] is None and "buffer_mb" in stage["peak_rss_not_measured"][0]

    # a profile that leaves buffer_mb unset (the demo's) is measured against the commands' default buffer
    del config["scarce"]["protocol"]["buffer_mb"]
    for stage in scarce_stages(default_of(ScarceConfig, "buffer_mb")):
        assert stage["peak_rss_bytes"] == 4_460_064_768
