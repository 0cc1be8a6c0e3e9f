# Legacy-v1.5 on ADE20K (paper Table 2 left: 40.26 mIoU): the output of each up-stage resolution of SD1.5. Models and
# level widths: ../_base_/models/sd15_legacy.py. `diffact seg-train --model/--layers` can point the same config at
# other weights or layers.
_base_ = ['../_base_/ade20k_segmentor.py', '../_base_/models/sd15_legacy.py']
model = dict(backbone=dict(models={{_base_.diffusion_models}}),
             decode_head=dict(in_channels={{_base_.level_channels}}),
             auxiliary_head=dict(in_channels={{_base_.aux_channels}}))
