# Ours-XL-t for segmentation (App. B.4, the paper's configs/ade_full.py): SDXL's practical set +
# up-level1-upsampler-out, and Playground v2's up-level0 block 5, up-level1 block-0 cross-q and up-level1-upsampler-out,
# both at 1024 px; level i of both models is concatenated ([3840, 1920, 1280] channels at 32², 64², 128²). Per layer
# MultiRes(C, 4), per level MultiRes(sum, 2), then one ResBlock per level.
diffusion_models = [
    dict(source='stabilityai/stable-diffusion-xl-base-1.0', family='sdxl', image_size=1024,
         layers=['up-level0-repeat0-vit-block7-out', 'up-level0-repeat0-vit-block5-out',
                 'up-level1-repeat0-vit-block0-cross-q', 'up-level1-repeat0-vit-block0-out',
                 'up-level1-upsampler-out']),
    dict(source='playgroundai/playground-v2-1024px-aesthetic', family='sdxl', image_size=1024,
         layers=['up-level0-repeat0-vit-block5-out', 'up-level1-repeat0-vit-block0-cross-q',
                 'up-level1-upsampler-out']),
]
level_channels = [3840, 1920, 1280]
aux_channels = 1920  # the FCN auxiliary head reads level 1
