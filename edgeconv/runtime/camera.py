"""Camera frames for the live unlock loop (optional extra ``camera``: OpenCV).

There is **no face detector**: the frame is centre-cropped to the model's aspect
ratio (keeping ``crop`` of the shorter side, default 60 %) and resized to the
model's input size.  The user must hold the face centred and upright, filling the
crop, as in the aligned training images.  Use ``--save-crop`` to see what the
model sees.  Only :class:`Camera` needs OpenCV; the crop helper is numpy + Pillow.
"""

from __future__ import annotations

import numpy as np

from edgeconv.errors import EdgeconvError, require
from edgeconv.runtime.closing import Closing


def center_crop_resize(frame: np.ndarray, size, crop: float = 0.6) -> np.ndarray:
    """Centre crop of an RGB uint8 frame with the aspect ratio of ``size`` (H, W),
    ``crop`` times the largest such crop, resized bilinearly to ``size``."""
    from PIL import Image

    arr = np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise EdgeconvError(f"expected an RGB uint8 frame (H, W, 3), got {arr.dtype} {arr.shape}")
    if not 0.05 <= float(crop) <= 1.0:
        raise EdgeconvError(f"crop must be between 0.05 and 1, got {crop}")
    th, tw = (int(v) for v in size)
    h, w = arr.shape[:2]
    ch = min(h, w * th / tw)          # largest crop of the target aspect ratio
    ch, cw = ch * crop, ch * crop * tw / th
    ch, cw = max(1, int(round(ch))), max(1, int(round(cw)))
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    region = np.ascontiguousarray(arr[y0:y0 + ch, x0:x0 + cw])
    if region.shape[:2] == (th, tw):
        return region
    return np.asarray(Image.fromarray(region, "RGB").resize((tw, th), Image.BILINEAR),
                      dtype=np.uint8)


class Camera(Closing):
    """``cv2.VideoCapture(index)`` yielding RGB frames; a context manager."""

    def __init__(self, index: int = 0, width: int | None = None, height: int | None = None):
        cv2 = require("cv2", "camera", package="opencv-python-headless")
        self._cv2 = cv2
        self.index = index
        self.cap = cv2.VideoCapture(index)
        if not self.cap.isOpened():
            self.cap.release()
            raise EdgeconvError(f"camera {index}: cannot open the video device")
        if width:
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, int(width))
        if height:
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, int(height))

    def read(self) -> np.ndarray:
        ok, frame = self.cap.read()
        if not ok or frame is None:
            raise EdgeconvError(f"camera {self.index}: no frame (device busy or unplugged?)")
        if frame.ndim == 2:
            frame = self._cv2.cvtColor(frame, self._cv2.COLOR_GRAY2RGB)
        else:
            frame = self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB)
        return np.ascontiguousarray(frame)

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None

