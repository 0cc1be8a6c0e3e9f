# sdxl 'amalgamation' set on ADE20K: the Playground v2 part of Ours-XL-t for correspondence (App. B.3), here on
# SDXL. The paper ran no segmentation with this set alone (Table 2 left has no such row); kept so every named set
# can be compared. Levels (one per resolution, coarsest first) have [1280] channels at 1024 px; the build checks
# them against the U-Net's catalog. `diffact seg-train --model/--layers` can point the same config at other weights
# or layers.
_base_ = ['../_base_/ade20k_segmentor.py']
model = dict(
    backbone=dict(models=[
        dict(source='stabilityai/stable-diffusion-xl-base-1.0', family='sdxl', layers='amalgamation', image_size=1024),
    ]),
    decode_head=dict(in_channels=[1280]),
    auxiliary_head=dict(in_channels=1280))
