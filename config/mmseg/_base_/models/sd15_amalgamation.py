# SD1.5's 'amalgamation' set: the SD1.5 part of Ours-XL-t for correspondence (App. B.3: four activations + the
# aggregated up-stage cross-attention maps, 154 channels); levels (one per resolution, coarsest first) of [1280, 640,
# 1114] channels at 512 px, checked against the U-Net's catalog when the segmentor is built. A leaf config
# (../../<dataset>/sd15_amalgamation.py) puts them into its model.
diffusion_models = [dict(source='stable-diffusion-v1-5/stable-diffusion-v1-5', family='sd15', layers='amalgamation', image_size=512)]
level_channels = [1280, 640, 1114]
aux_channels = 640  # the FCN auxiliary head reads level 1
