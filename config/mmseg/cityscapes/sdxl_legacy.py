# Legacy-XL on Cityscapes (paper Table 2 left: 71.67 mIoU): the output of each up-stage resolution of SDXL. Models and
# level widths: ../_base_/models/sdxl_legacy.py. `diffact seg-train --model/--layers` can point the same config at
# other weights or layers.
_base_ = ['../_base_/cityscapes_segmentor.py', '../_base_/models/sdxl_legacy.py']
model = dict(backbone=dict(models={{_base_.diffusion_models}}),
             decode_head=dict(in_channels={{_base_.level_channels}}),
             auxiliary_head=dict(in_channels={{_base_.aux_channels}}))
