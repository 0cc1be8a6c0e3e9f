# Legacy-XL on Cityscapes (paper Table 2 left: 71.67 mIoU): the output of each up-stage resolution of SDXL. Levels
# (one per resolution, coarsest first) have [1280, 960] channels at 1024 px; the build checks them against the
# U-Net's catalog. `diffact seg-train --model/--layers` can point the same config at other weights or layers.
_base_ = ['../_base_/cityscapes_segmentor.py']
model = dict(
    backbone=dict(models=[
        dict(source='stabilityai/stable-diffusion-xl-base-1.0', family='sdxl', layers='legacy', image_size=1024),
    ]),
    decode_head=dict(in_channels=[1280, 960]),
    auxiliary_head=dict(in_channels=960))
