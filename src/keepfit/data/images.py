"""Images as data: the one conversion every stage uses to read an image as RGB.

(The loader and its check are being written; :func:`open_rgb` is the shared contract: the data check notes what
it converts, training and prediction read every image through it.)
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

__all__ = ["open_rgb"]


def open_rgb(path: str | Path) -> Image.Image:
    """The image at ``path`` as 8-bit RGB, upright (EXIF orientation applied), fully decoded.

    16-bit grey is scaled to 8 bits by its top byte; alpha is composited on white; palette, CMYK, 1-bit and grey
    images are converted by Pillow's own ``convert("RGB")``.
    """
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            img = img.point(lambda v: v / 256).convert("L")
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        if img.mode in ("RGBA", "LA", "PA"):
            rgba = img.convert("RGBA")
            back = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(back, rgba).convert("RGB")
        return img.convert("RGB")
