# Everything of an ADE20K run but the diffusion models and their widths (the leaf configs in ../ade20k/ add those).
_base_ = ['segmentor.py', 'ade20k.py', 'schedule_80k.py', 'runtime.py']
model = dict(
    data_preprocessor=dict(size=(512, 512)),
    backbone=dict(prompt={{_base_.prompt}}, dtype='float16'),
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(512, 512)))
