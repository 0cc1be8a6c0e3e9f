# Runtime of every diffact segmentation config (mmseg's default_runtime, as the paper's code uses it), plus the
# registration of diffact's mmseg modules through mmengine's custom_imports: nothing is copied into mmseg.
custom_imports = dict(
    imports=['diffact.tasks.segmentation.backbone', 'diffact.tasks.segmentation.mmseg_data'],
    allow_failed_imports=False)
default_scope = 'mmseg'
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)  # `diffact seg-train --seed` sets it
