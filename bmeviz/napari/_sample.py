"""napari sample data: the shipped synthetic STIR knee phantom (a real scan cannot be shipped)."""

from __future__ import annotations

from ._layers import image_kwargs, labels_kwargs

__all__ = ["phantom"]


def phantom() -> list[tuple]:
    """The phantom image, its bone region (the search region) and its ground truth (hidden).

    Three clicks segment it in the "BME segmentation" widget: a reference point in normal
    marrow, a seed in each bright lesion, then Grow (with the bone as region).
    """
    from ..data import load_sample

    vol, gt = load_sample()
    image = image_kwargs(vol, name="phantom STIR")
    image["metadata"]["bmeviz"]["path"] = "phantom_stir.nii.gz"
    bone = labels_kwargs(vol, name="bone (search region)")
    bone.update(opacity=0.25, colormap={None: "transparent", 0: "transparent", 1: "#3f7fbf"})
    truth = labels_kwargs(vol, name="phantom truth")
    truth.update(visible=False, opacity=0.5)
    return [
        (vol.array, image, "image"),
        (gt["bone"].astype("uint8"), bone, "labels"),
        (gt["truth"].astype("uint8"), truth, "labels"),
    ]
