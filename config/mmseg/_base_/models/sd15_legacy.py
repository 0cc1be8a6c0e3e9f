# Legacy-v1.5: the output of each up-stage resolution of SD1.5; levels (one per resolution, coarsest first) of [1280,
# 1280, 960] channels at 512 px, checked against the U-Net's catalog when the segmentor is built. A leaf config
# (../../<dataset>/sd15_legacy.py) puts them into its model.
diffusion_models = [dict(source='stable-diffusion-v1-5/stable-diffusion-v1-5', family='sd15', layers='legacy', image_size=512)]
level_channels = [1280, 1280, 960]
aux_channels = 1280  # the FCN auxiliary head reads level 1
