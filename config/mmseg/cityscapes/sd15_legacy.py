# Legacy-v1.5 on Cityscapes (paper Table 2 left: 64.01 mIoU): the output of each up-stage resolution of SD1.5.
# Levels (one per resolution, coarsest first) have [1280, 1280, 960] channels at 512 px; the build checks them
# against the U-Net's catalog. `diffact seg-train --model/--layers` can point the same config at other weights or
# layers.
_base_ = ['../_base_/cityscapes_segmentor.py']
model = dict(
    backbone=dict(models=[
        dict(source='stable-diffusion-v1-5/stable-diffusion-v1-5', family='sd15', layers='legacy', image_size=512),
    ]),
    decode_head=dict(in_channels=[1280, 1280, 960]),
    auxiliary_head=dict(in_channels=1280))
