"""Optic disc / cup segmentation of fundus photographs (TVConv paper, section 4.2).

One idea per module:

* :mod:`~edgeconv.segmentation.fundus` - the seeded procedural fundus renderer (numpy) with
  four centre profiles (the built-in data set; real fundus sets cannot be downloaded here);
* :mod:`~edgeconv.segmentation.data` - real image + mask folders (DoFE / REFUGE layouts) and
  the leave-one-domain-out splits;
* :mod:`~edgeconv.segmentation.models` - DeepLabV3+ with a MobileNetV2 backbone, ASPP plain or
  with inverted-residual branches built on any registered op (``deeplabv3p_mbv2``);
* :mod:`~edgeconv.segmentation.metrics` - post-processing (threshold, largest connected
  component, hole filling; numpy only) and DSC / HD95 / ASD in pixels;
* :mod:`~edgeconv.segmentation.train` - ``edgeconv seg-train`` / ``seg-eval`` (torch);
* :mod:`~edgeconv.segmentation.runtime` - the torch-free device-side segmenter
  (``edgeconv segment``).

Everything except ``models`` and ``train`` is torch-free.
"""

#: the output channels of every segmentation model, in order (disc includes cup)
CLASSES = ("cup", "disc")
