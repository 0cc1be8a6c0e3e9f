# sdxl 'amalgamation' set on ADE20K: the Playground v2 part of Ours-XL-t for correspondence (App. B.3), here on SDXL.
# The paper ran no segmentation with this set alone (Table 2 left has no such row); kept so every named set can be
# compared. Models and level widths: ../_base_/models/sdxl_amalgamation.py. `diffact seg-train --model/--layers` can
# point the same config at other weights or layers.
_base_ = ['../_base_/ade20k_segmentor.py', '../_base_/models/sdxl_amalgamation.py']
model = dict(backbone=dict(models={{_base_.diffusion_models}}),
             decode_head=dict(in_channels={{_base_.level_channels}}),
             auxiliary_head=dict(in_channels={{_base_.aux_channels}}))
