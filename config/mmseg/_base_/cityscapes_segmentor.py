# Everything of a Cityscapes run but the diffusion models and their widths (the leaf configs in ../cityscapes/).
_base_ = ['segmentor.py', 'cityscapes.py', 'schedule_80k.py', 'runtime.py']
model = dict(
    data_preprocessor=dict(size=(1024, 1024)),
    backbone=dict(prompt={{_base_.prompt}}, dtype='float16'),
    decode_head=dict(num_classes=19),
    auxiliary_head=dict(num_classes=19),
    test_cfg=dict(mode='slide', crop_size=(1024, 1024), stride=(512, 512)))
