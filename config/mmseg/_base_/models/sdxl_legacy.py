# Legacy-XL: the output of each up-stage resolution of SDXL; levels (one per resolution, coarsest first) of [1280,
# 960] channels at 1024 px, checked against the U-Net's catalog when the segmentor is built. A leaf config
# (../../<dataset>/sdxl_legacy.py) puts them into its model.
diffusion_models = [dict(source='stabilityai/stable-diffusion-xl-base-1.0', family='sdxl', layers='legacy', image_size=1024)]
level_channels = [1280, 960]
aux_channels = 960  # the FCN auxiliary head reads level 1
