# Ours-v1.5: SD1.5's four chosen activations (App. B.1); levels (one per resolution, coarsest first) of [2560, 640,
# 320] channels at 512 px, checked against the U-Net's catalog when the segmentor is built. A leaf config
# (../../<dataset>/sd15_practical.py) puts them into its model.
diffusion_models = [dict(source='stable-diffusion-v1-5/stable-diffusion-v1-5', family='sd15', layers='practical', image_size=512)]
level_channels = [2560, 640, 320]
aux_channels = 640  # the FCN auxiliary head reads level 1
