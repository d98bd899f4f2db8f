"""Predictability error and membership error (Shafran, Peleg & Hoshen, ICCV 2021).

The predictability error of a query says how easy its ground truth is to predict from
its input: a linear regression from deep features of the input (frozen wide_resnet50_2,
layer1..layer4 upsampled to 56x56 and concatenated, 3840 features per pixel) to the
ground-truth pixels (resized to 56x56) is fit on a random 70% of the 3136 pixels, and the
error is its mean absolute error on the other 30%. The membership error subtracts it from
the reconstruction error, so that images that are merely easy are not taken for members.

The reference (public code avitalsh/reconst_based_MIA, ``predictability_error.py``) runs
skimage and sklearn per image. This package computes the same numbers batched on the
attack's device (:mod:`.reduction` and :mod:`.solver` say how).

One module per job:

* :mod:`.backbone`: the frozen ResNet and its preprocessing (``FeatureBackbone``);
* :mod:`.solver`: exact batched minimum-norm least squares;
* :mod:`.reduction`: the reference's upsampled features, reduced, and the linear
  predictions on them;
* :mod:`.error`: ground truth, pixel split and the predictability error
  (``PredictabilityError``);
* :mod:`.reference`: the skimage + sklearn reference, for tests and benches;
* :mod:`.membership_error`: the attack (``MembershipError``).

Where this differs from the reference on purpose:

* The input is preprocessed on tensors (torchvision's antialiased bilinear resize to 256,
  centre crop 224), which approximates but does not bit-match PIL's 8-bit ``Resize(256)``;
  the ground truth, on the other hand, is resized with PIL exactly as the reference does.
* The pixel split is a permutation seeded by ``(seed, sample_id)``, with sklearn's sizes;
  the reference's ``train_test_split`` is unseeded, so it is not reproducible anyway.
* The solve runs in float64 by default. The reference hands sklearn float32 features, and
  float32 lstsq differs from the exact minimum-norm answer (by ~1e-5 on random maps, by
  ~3e-3 on the nearly degenerate maps of a randomly initialised network); this package
  matches the float64 (exact) answer.

What this copies from the reference although it looks like a slip: the features see the
centre 224x224 crop of the input resized to 256 (the middle 87.5% of each side), while the
ground truth is the *whole* image resized to 56x56, so feature pixel ``(i, j)`` and target
pixel ``(i, j)`` cover slightly different parts of the scene. miabench keeps this
misalignment, because the published numbers were measured with it.
"""
