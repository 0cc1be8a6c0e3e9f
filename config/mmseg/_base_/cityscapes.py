# Cityscapes (mmseg layout: leftImg8bit/{train,val}/<city>, gtFine/{train,val}/<city> with *_labelTrainIds.png), the
# paper's pipeline (docs/paper.md §2.9; differs from mmseg's base): fixed resize to (2048, 1024), random 1024² crop
# (cat_max 0.75), flip, photometric distortion; test: resize to (2048, 1024), slide inference with stride 512.
dataset_type = 'CityscapesDataset'
data_root = 'data/cityscapes'             # `diffact seg-train --data-root` sets it
crop_size = (1024, 1024)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='Resize', scale=(2048, 1024), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 1024), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2,  # ≥ 2 required (seg-train checks): UPerHead's pooling-branch BatchNorm needs > 1 image
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='leftImg8bit/val', seg_map_path='gtFine/val'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='PerClassIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
# The paper's Cityscapes prompt (docs/paper.md §2.9).
prompt = ('An urban street scene with multiple lanes, various buildings, traffic lights, cars in the lanes, '
          'and pedestrians, highly realistic.')
