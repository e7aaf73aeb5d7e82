"""Small torch-free helpers shared by the CLI and the torch side."""

from __future__ import annotations

from edgeconv.errors import EdgeconvError

DEFAULT_INPUT_SIZE = (96, 96)


def parse_input_size(value) -> tuple[int, int]:
    """'96' -> (96, 96); '112x96' -> (112, 96) as (height, width); ints and pairs pass through."""
    if value is None:
        return DEFAULT_INPUT_SIZE
    if isinstance(value, int):
        hw = (value, value)
    elif isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise EdgeconvError(f"input size must be N or HxW, got {value!r}")
        hw = (int(value[0]), int(value[1]))
    else:
        text = str(value).lower().replace(" ", "")
        parts = text.split("x")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise EdgeconvError(f"input size must be N or HxW, got {value!r}") from None
        if len(nums) == 1:
            hw = (nums[0], nums[0])
        elif len(nums) == 2:
            hw = (nums[0], nums[1])
        else:
            raise EdgeconvError(f"input size must be N or HxW, got {value!r}")
    if min(hw) < 16 or max(hw) > 1024:
        raise EdgeconvError(f"input size {hw[0]}x{hw[1]} out of range (16..1024)")
    return hw
