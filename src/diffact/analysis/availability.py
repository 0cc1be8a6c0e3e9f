"""Which of the paper's property figures (Figs 3–18) a profile can make, and with what (paper §4, App. A, E).

A figure that needs weights or data the profile lacks is listed with the reason instead of being skipped
silently; a figure made with stand-ins (tiny demo models, demo scenes, our control U-Net) is an ``analogue``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

SDXL_IDS = ("stabilityai/stable-diffusion-xl-base-1.0",)
SD15_IDS = ("stable-diffusion-v1-5/stable-diffusion-v1-5", "runwayml/stable-diffusion-v1-5")
PGV2_IDS = ("playgroundai/playground-v2-1024px-aesthetic",)


@dataclass(frozen=True)
class ModelInfo:
    """A model of the profile: name, family (sd15/sdxl), source (hub id or folder), built = demo-built."""

    name: str
    family: str
    source: str
    built: bool

    @property
    def is_paper_weights(self) -> bool:
        return self.source in SDXL_IDS + SD15_IDS + PGV2_IDS


def _pick(models: Sequence[ModelInfo], ids: Sequence[str], family: str | None) -> tuple[str, list[str]]:
    real = [m.name for m in models if m.source in ids]
    if real:
        return "produced", real
    by_family: dict[str, list[str]] = {}
    for m in models:
        by_family.setdefault(m.family, []).append(m.name)
    stand_ins = by_family.get(family, []) if family else []
    return ("analogue", stand_ins) if stand_ins else ("unavailable", [])


def figure_status(models: Sequence[ModelInfo], scenes: Sequence[str], control: bool) -> list[dict]:
    """One row per paper figure of the properties section: status, models used, output stem, reason.

    Every per-model figure is made for every profile model (``models`` column); ``status`` says whether the
    paper's own model is among them (``produced``), only stand-ins are (``analogue``), or nothing can be made.
    """
    rows = []
    names = [m.name for m in models]

    def add(figure, content, status, used, outputs, reason):
        rows.append({"figure": figure, "content": content, "status": status, "models": " ".join(used),
                     "outputs": outputs, "reason": reason})

    if not scenes:
        no_scene = "no labelled scene: properties.scenes names no configured dataset (locality needs per-pixel labels)"
        for figure, content in (("Fig 3", "the three properties on one image"), ("Fig 4", "per-activation PCK"),
                                ("Figs 5-11", "Fig 3 on other scenes"), ("Fig 12", "Playground v2"),
                                ("Fig 13", "SDv1.5"), ("Fig 15", "conventional U-Net"), ("Fig 16", "increments"),
                                ("Fig 17", "granularity in one resolution"), ("Fig 18", "the ViTs of one resolution")):
            add(figure, content, "unavailable", [], "", no_scene)
        add("Fig 14", "video diffusion (VideoCrafter2), one frame", "unavailable", [], "", VIDEO_REASON)
        return rows

    scene_note = f"demo scenes {', '.join(scenes)} instead of the paper's photos"
    # Figs 3, 5-11 and 16-18 are SDXL figures; the same figure is drawn for every profile model.
    status = "produced" if any(m.source in SDXL_IDS for m in models) else ("analogue" if names else "unavailable")
    stand_in = "paper weights not in this profile; tiny stand-ins"
    add("Fig 3", "the three properties on one image (SDXL)", status, names, "fig03_properties_<model>",
        (stand_in + "; " if status == "analogue" else "") + scene_note)
    add("Fig 4", "per-activation PCK@0.1: noise drop, locality (self-attn vs cross-q/out), locality vs noise",
        "analogue" if names else "unavailable", names, "fig04_pck_<model>",
        "nearest-neighbour PCK of single activations on the profile's correspondence data (paper: SPair-71k, "
        "probably SDXL); needs the correspondence screening of the model")
    add("Figs 5-11", "Fig 3 on other scenes (simple/complex, indoor/outdoor), SDXL", status, names,
        "fig05_13_scenes_<model>", (stand_in + "; " if status == "analogue" else "") + scene_note)
    status12, used12 = _pick(models, PGV2_IDS, None)
    add("Fig 12", "Playground v2 on the horse image", status12, used12, "fig05_13_scenes_<model>" if used12 else "",
        "needs Playground v2 weights (playgroundai/playground-v2-1024px-aesthetic), not in this profile"
        if status12 == "unavailable" else scene_note)
    status13, used13 = _pick(models, SD15_IDS, "sd15")
    add("Fig 13", "SDv1.5 on the horse image", status13, used13, "fig05_13_scenes_<model>",
        (stand_in + "; " if status13 == "analogue" else "") + scene_note)
    add("Fig 14", "video diffusion (VideoCrafter2), one frame", "unavailable", [], "", VIDEO_REASON)
    add("Fig 15", "conventional (non-diffusion) U-Net: properties hardly observed", "analogue" if control else "unavailable",
        ["control-unet"] if control else [], "fig15_control",
        "our residual U-Net trained briefly on a demo scene stands in for the road-extraction ResUNet [57]"
        if control else "no control U-Net configured (properties.control)")
    for figure, content, stem in (("Fig 16", "increments: ResModule increment, FFN inner, self-attn v", "fig16_increments_<model>"),
                                  ("Fig 17", "granularity across the inter-module activations of one resolution", "fig17_resolution_<model>"),
                                  ("Fig 18", "granularity across the ViTs of one resolution", "fig18_vits_<model>")):
        add(figure, content, status if names else "unavailable", names, stem,
            "paper: SDXL [I]; " + (stand_in + "; " if status != "produced" else "") + scene_note)
    return rows


VIDEO_REASON = ("needs VideoCrafter2 (a video U-Net with temporal attention); diffact handles image "
                "UNet2DConditionModel pipelines only")
