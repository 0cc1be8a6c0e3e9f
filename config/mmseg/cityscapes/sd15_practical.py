# Ours-v1.5 on Cityscapes (paper Table 2 left: 64.10 mIoU): SD1.5's four chosen activations (App. B.1). Levels (one
# per resolution, coarsest first) have [2560, 640, 320] channels at 512 px; the build checks them against the
# U-Net's catalog. `diffact seg-train --model/--layers` can point the same config at other weights or layers.
_base_ = ['../_base_/cityscapes_segmentor.py']
model = dict(
    backbone=dict(models=[
        dict(source='stable-diffusion-v1-5/stable-diffusion-v1-5', family='sd15', layers='practical', image_size=512),
    ]),
    decode_head=dict(in_channels=[2560, 640, 320]),
    auxiliary_head=dict(in_channels=640))
