# The demo stand-in for ADE20K: the complex demo scenes in ADE20K's layout (`diffact make-demo-ade`; 6 classes,
# PNG 0 = "other", ignored via reduce_zero_label as on ADE20K). The paper's ADE20K pipeline at the demo's scale:
# 64-px images instead of short side 512, so resize (256, 64) by 0.5-2, random 64² crop, flip, photometric
# distortion; test: resize to (256, 64), slide inference. No worker processes (a few ms of work per image).
dataset_type = 'DemoADE20KDataset'
data_root = 'results/data/ade-demo'       # `diffact seg-train --data-root` sets it
crop_size = (64, 64)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(256, 64), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 64), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2,  # ≥ 2 required (seg-train checks): UPerHead's pooling-branch BatchNorm needs > 1 image
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        serialize_data=False,  # see below
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        serialize_data=False,  # see below
        pipeline=test_pipeline))
test_dataloader = val_dataloader
# serialize_data=False: mmengine pickles a dataset's file list into one array (shared by worker processes, which the
# demo does not start) and then runs gc.collect(), a full collection over every object torch, diffusers and mmseg
# have made, ~0.5 CPU s per dataset; each item is the same dict either way (pickled copy or deep copy).
val_evaluator = dict(type='PerClassIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
# The paper's ADE20K prompt: the demo stands in for ADE20K.
prompt = ('a highly realistic photo of the real world. It can be an indoor scene, or an outdoor scene, '
          'or a photo of nature. high quality.')
