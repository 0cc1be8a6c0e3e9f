# sd15 'amalgamation' set on Cityscapes: the SD1.5 part of Ours-XL-t for correspondence (App. B.3: four activations +
# the aggregated up-stage cross-attention maps, 154 channels). The paper ran no segmentation with this set alone
# (Table 2 left has no such row); kept so every named set can be compared. Models and level widths:
# ../_base_/models/sd15_amalgamation.py. `diffact seg-train --model/--layers` can point the same config at other
# weights or layers.
_base_ = ['../_base_/cityscapes_segmentor.py', '../_base_/models/sd15_amalgamation.py']
model = dict(backbone=dict(models={{_base_.diffusion_models}}),
             decode_head=dict(in_channels={{_base_.level_channels}}),
             auxiliary_head=dict(in_channels={{_base_.aux_channels}}))
