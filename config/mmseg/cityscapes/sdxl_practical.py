# Ours-XL on Cityscapes (paper Table 2 left: 74.47 mIoU): SDXL's four chosen activations (App. B.2). Levels (one per
# resolution, coarsest first) have [2560, 1280] channels at 1024 px; the build checks them against the U-Net's
# catalog. `diffact seg-train --model/--layers` can point the same config at other weights or layers.
_base_ = ['../_base_/cityscapes_segmentor.py']
model = dict(
    backbone=dict(models=[
        dict(source='stabilityai/stable-diffusion-xl-base-1.0', family='sdxl', layers='practical', image_size=1024),
    ]),
    decode_head=dict(in_channels=[2560, 1280]),
    auxiliary_head=dict(in_channels=1280))
