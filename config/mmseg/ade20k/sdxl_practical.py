# Ours-XL on ADE20K (paper Table 2 left: 43.45 mIoU): SDXL's four chosen activations (App. B.2). Models and level
# widths: ../_base_/models/sdxl_practical.py. `diffact seg-train --model/--layers` can point the same config at other
# weights or layers.
_base_ = ['../_base_/ade20k_segmentor.py', '../_base_/models/sdxl_practical.py']
model = dict(backbone=dict(models={{_base_.diffusion_models}}),
             decode_head=dict(in_channels={{_base_.level_channels}}),
             auxiliary_head=dict(in_channels={{_base_.aux_channels}}))
