# The paper's schedule (docs/paper.md §2.9; the paper's segmentation/configs/_base_/schedules/schedule_80k.py and its
# leaf configs): AdamW lr 1.6e-4, weight decay 1e-3, PolyLR power 0.9 down to 1e-4, 80k iterations, validation
# every 2000 iterations, a checkpoint every 8000. Only the latest checkpoint is kept (max_keep_ckpts=1, issue #19):
# `seg-train --resume` continues from it and the results come from the validation history, never from an older
# checkpoint; mmengine's default keeps all 10 (354 GB over the paper profile's 10 runs).
optimizer = dict(type='AdamW', lr=1.6e-4, weight_decay=1e-3)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=80000, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=80000, val_interval=2000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=8000, max_keep_ckpts=1, save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
