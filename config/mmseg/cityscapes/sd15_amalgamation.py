# sd15 'amalgamation' set on Cityscapes: the SD1.5 part of Ours-XL-t for correspondence (App. B.3: four activations
# + the aggregated up-stage cross-attention maps, 154 channels). The paper ran no segmentation with this set alone
# (Table 2 left has no such row); kept so every named set can be compared. Levels (one per resolution, coarsest
# first) have [1280, 640, 1114] channels at 512 px; the build checks them against the U-Net's catalog. `diffact
# seg-train --model/--layers` can point the same config at other weights or layers.
_base_ = ['../_base_/cityscapes_segmentor.py']
model = dict(
    backbone=dict(models=[
        dict(source='stable-diffusion-v1-5/stable-diffusion-v1-5', family='sd15', layers='amalgamation', image_size=512),
    ]),
    decode_head=dict(in_channels=[1280, 640, 1114]),
    auxiliary_head=dict(in_channels=640))
