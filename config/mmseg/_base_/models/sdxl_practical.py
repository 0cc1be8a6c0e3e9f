# Ours-XL: SDXL's four chosen activations (App. B.2); levels (one per resolution, coarsest first) of [2560, 1280]
# channels at 1024 px, checked against the U-Net's catalog when the segmentor is built. A leaf config
# (../../<dataset>/sdxl_practical.py) puts them into its model.
diffusion_models = [dict(source='stabilityai/stable-diffusion-xl-base-1.0', family='sdxl', layers='practical', image_size=1024)]
level_channels = [2560, 1280]
aux_channels = 1280  # the FCN auxiliary head reads level 1
