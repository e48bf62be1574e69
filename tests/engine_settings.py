"""Tiny, fast NVDINOv2 settings shared by the integration tests (real training, seconds on 2 CPU cores).

Applied on top of the skill's smoke profile (ViT-S teacher/student, img_size 224, 32-true).
"""

TINY_TRAIN_OVERRIDES = {
    "dataset.batch_size": 4,
    "dataset.workers": 1,
    "dataset.transform.global_crops_size": 42,
    "dataset.transform.n_local_crops": 2,
    "dataset.transform.local_crops_size": 28,
    "train.num_prototypes": 256,
    "train.num_epochs": 1,
    "train.checkpoint_interval": 1,
}
