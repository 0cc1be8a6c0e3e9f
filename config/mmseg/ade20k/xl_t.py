# Ours-XL-t on ADE20K (paper Table 2 left: 45.71 mIoU; App. B.4, the paper's configs/ade_full.py). Models and level
# widths: ../_base_/models/xl_t.py. `diffact seg-train --model/--layers` can point the same config at other weights or
# layers.
_base_ = ['../_base_/ade20k_segmentor.py', '../_base_/models/xl_t.py']
model = dict(backbone=dict(models={{_base_.diffusion_models}}),
             decode_head=dict(in_channels={{_base_.level_channels}}),
             auxiliary_head=dict(in_channels={{_base_.aux_channels}}))
