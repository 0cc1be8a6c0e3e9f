"""The model families (issue #17): one registry that everything asks, no family branches outside families/,
no import cycles, and the DiTs' catalogs offline from their hub ids."""

import json
import re
from pathlib import Path

import pytest
from test_architecture import imported, modules

from diffact.families import FAMILIES, family_of, find_family, get_family
from diffact.utils.errors import ConfigError

SRC = Path(__file__).resolve().parents[1] / "src" / "diffact"


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_family_branches_outside_families():
    pattern = re.compile(r"family ==|family in \(")
    offenders = [f"{p.relative_to(SRC)}:{i}" for p in SRC.rglob("*.py") if "families" not in p.parts
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_models_import_nothing_from_extract():
    mods = modules()
    offenders = {m: sorted(i for i in imported(p, set(mods)) if i.startswith("diffact.extract"))
                 for m, p in mods.items() if m.startswith("diffact.models")}
    assert {m: i for m, i in offenders.items() if i} == {}


def test_the_package_has_no_import_cycle():
    mods = modules()
    graph = {m: imported(p, set(mods)) - {m} for m, p in mods.items()}
    assert _cycle(graph) is None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]


def test_registry_names_and_recognition(tiny_sd15_unet):
    assert list(FAMILIES) == ["sd15", "sdxl", "pixart", "sd3", "flux"]
    assert family_of(tiny_sd15_unet).name == "sd15"
    assert find_family(__import__("torch").nn.Linear(2, 2)) is None
    with pytest.raises(ConfigError, match="unknown model family 'dit'; known families: sd15, sdxl, pixart, sd3, flux"):
        get_family("dit")
    for name, family in FAMILIES.items():
        assert family.name == name and family.denoiser_attr in ("unet", "transformer") and family.denoiser_classes


# hub id → (activations without maps, with maps, cross-map width): blocks × kinds per block
OFFLINE_CATALOGS = {
    "black-forest-labs/FLUX.1-dev": (57 * 6, 57 * 8, 512),  # 19 double + 38 single blocks; T5 512 tokens
    "black-forest-labs/FLUX.1-schnell": (57 * 6, 57 * 8, 512),
    # CLIP 77 + T5 77: SD3's training length (families/sd3.py T5_TOKENS), not encode_prompt's default 256
    "stabilityai/stable-diffusion-3-medium-diffusers": (24 * 5, 24 * 7, 77 + 77),
    "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS": (28 * 6, 28 * 8, 300),  # T5 300 tokens
}


@pytest.mark.parametrize("hub_id", OFFLINE_CATALOGS)
def test_dit_catalogs_list_offline_from_their_hub_ids(hub_id, tmp_path, monkeypatch, cli):
    """Offline and with an empty Hugging Face cache: the configs are the ones shipped in models/hub_configs."""
    plain, with_maps, cross = OFFLINE_CATALOGS[hub_id]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    result = cli("layers", "--model", hub_id, "--json", "--maps")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == with_maps and len([r for r in rows if not r["kind"].endswith("-map")]) == plain
    assert {r["height"] for r in rows} == {64}  # 1024 px → 128 latents → 64² tokens (patch 2 / 2×2 packing)
    assert {r["channels"] for r in rows if r["kind"] == "cross-map"} == {cross}
    assert {r["channels"] for r in rows if r["kind"] == "self-map"} == {64 * 64}


def test_families_import_only_families_and_utils():
    mods = modules()
    outside = {m: sorted(i for i in imported(p, set(mods)) if not i.startswith(("diffact.families", "diffact.utils")))
               for m, p in mods.items() if m.startswith("diffact.families")}
    assert {m: i for m, i in outside.items() if i} == {}


@pytest.mark.parametrize("hub_id, family, pool", [("black-forest-labs/FLUX.1-dev", "flux", 57 * 5),
                                                  ("stabilityai/stable-diffusion-3-medium-diffusers", "sd3", 24 * 4),
                                                  ("PixArt-alpha/PixArt-Sigma-XL-2-1024-MS", "pixart", 28 * 5)])
def test_dit_layer_sets_resolve_on_the_real_catalogs(hub_id, family, pool):
    from diffact.api import list_activations

    full = list_activations(hub_id, maps=True)
    assert len(list_activations(hub_id, layer_set="pool")) == pool
    assert [r["name"] for r in list_activations(hub_id, maps=True, layer_set="full-maps")] == [r["name"] for r in full]
    assert len(list_activations(hub_id, layer_set="full")) == len([r for r in full if not r["kind"].endswith("map")])
    # every block is in the pool: the block filter reads DiT names (vit-block<i>-...) too
    blocks = {r["name"].split("-")[1] for r in list_activations(hub_id, layer_set="pool")}
    assert len(blocks) == {"flux": 57, "sd3": 24, "pixart": 28}[family]


def test_dit_names_parse_in_forward_order_with_catalog_kinds():
    """The analyses order store layers by name (stores list them alphabetically): DiT names parse to the catalog's
    kinds and sort into the walk's order, SD3.5's second attention included."""
    import random

    from diffact.analysis.names import forward_sorted, parse_name, resolution_label
    from diffact.families import walk
    from test_dit import _flux, _pixart, _sd3  # the tiny DiTs of tests/test_dit.py (pytest puts tests/ on the path)

    for model in (_pixart(), _sd3(), _flux()):
        catalog = list(walk(model))
        names = [a.name for a in catalog]
        shuffled = names[:]
        random.Random(0).shuffle(shuffled)
        assert forward_sorted(shuffled) == names
        assert [parse_name(n).kind for n in names] == [a.kind for a in catalog]
        assert {resolution_label(parse_name(n)) for n in names} == {"dit"}
    assert parse_name("vit-block3-out").is_inter_module and not parse_name("vit-block3-self-q").is_inter_module


def test_the_demo_plans_the_dits_screen_properties_and_comparison_but_no_unet_figures():
    """The demo profile's DiT (sd3-tiny): its NN PCK screen, property analyses, the U-Net vs DiT figure and its
    screen-chosen practical set are planned; the figures drawn from U-Net stages and ViT levels (2, 3, 4, 5-13, 16-18) are not."""
    import subprocess
    import sys

    root = SRC.parents[1]
    done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--forceall", "--nolock", "--cores", "1"],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    plan = done.stdout + done.stderr
    for path in ("results/models/sd3-tiny.loss.csv", "results/correspondence/sd3-tiny/nn_pck.csv",
                 "results/properties/sd3-tiny/seg-simple/noise_share.csv", "results/properties/sd3-tiny/properties.csv",
                 "paper_figures/demo/properties_unet_vs_dit.png",
                 # its practical set, chosen by a validation screen (ours) and scored on the test pairs
                 "results/correspondence/practical/sd3-tiny/screen_val.csv",
                 "results/correspondence/practical/sd3-tiny/practical.yaml",
                 "results/correspondence/practical/practical_nn.csv"):
        assert path in plan, path
    assert not re.search(r"paper_figures/demo/fig\d+[a-z0-9_]*_sd3-tiny", plan)
