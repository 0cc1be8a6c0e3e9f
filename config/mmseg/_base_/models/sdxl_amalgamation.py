# SDXL's 'amalgamation' set: the Playground v2 part of Ours-XL-t for correspondence (App. B.3), here on SDXL; levels
# (one per resolution, coarsest first) of [1280] channels at 1024 px, checked against the U-Net's catalog when the
# segmentor is built. A leaf config (../../<dataset>/sdxl_amalgamation.py) puts them into its model.
diffusion_models = [dict(source='stabilityai/stable-diffusion-xl-base-1.0', family='sdxl', layers='amalgamation', image_size=1024)]
level_channels = [1280]
aux_channels = 1280  # the FCN auxiliary head reads level 0
