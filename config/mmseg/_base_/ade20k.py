# ADE20K (ADEChallengeData2016, mmseg layout: images/{training,validation}, annotations/{training,validation}), the
# paper's pipeline (docs/paper.md §2.9 = mmseg's ade20k base with batch 2): random resize of (2048, 512) by 0.5-2, random
# 512² crop (cat_max 0.75), flip, photometric distortion; test: resize to (2048, 512), slide inference.
dataset_type = 'ADE20KDataset'
data_root = 'data/ADEChallengeData2016'   # `diffact seg-train --data-root` sets it
crop_size = (512, 512)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),  # after Resize: scored at the original size
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2,  # ≥ 2 required (seg-train checks): UPerHead's pooling-branch BatchNorm needs > 1 image
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='PerClassIoUMetric', iou_metrics=['mIoU'])  # mmseg's IoUMetric + per-class values
test_evaluator = val_evaluator
# The paper's ADE20K prompt (docs/paper.md §2.9).
prompt = ('a highly realistic photo of the real world. It can be an indoor scene, or an outdoor scene, '
          'or a photo of nature. high quality.')
