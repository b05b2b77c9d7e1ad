"""Deep Zoom descriptors: the `.dzi` XML and the JSON form OpenSeadragon also reads."""

from __future__ import annotations

import math
from typing import Any
from xml.etree.ElementTree import Element, SubElement, fromstring, tostring

from pydantic import BaseModel, ConfigDict

from functions.slides.geometry import DeepZoomGeometry

DZI_NAMESPACE = "http://schemas.microsoft.com/deepzoom/2008"


class DziDescriptor(BaseModel):
    """What a viewer needs to lay out the tiles of one slide."""

    model_config = ConfigDict(frozen=True)

    width: int
    height: int
    tile_size: int
    overlap: int
    format: str
    level_count: int

    @classmethod
    def from_geometry(cls, geometry: DeepZoomGeometry, fmt: str) -> DziDescriptor:
        width, height = geometry.dimensions
        return cls(
            width=width,
            height=height,
            tile_size=geometry.tile_size,
            overlap=geometry.overlap,
            format=fmt,
            level_count=geometry.level_count,
        )

    @classmethod
    def from_xml(cls, text: str | bytes) -> DziDescriptor:
        """Parse a `.dzi` document (e.g. the one `dzsave` wrote); ValueError if it is not
        one."""
        try:
            image = fromstring(text)
            size = image.find(f"{{{DZI_NAMESPACE}}}Size")
            if size is None:
                size = image.find("Size")
            if size is None:
                raise ValueError("no Size element")
            width, height = int(size.attrib["Width"]), int(size.attrib["Height"])
            return cls(
                width=width,
                height=height,
                tile_size=int(image.attrib["TileSize"]),
                overlap=int(image.attrib["Overlap"]),
                format=image.attrib["Format"],
                level_count=math.ceil(math.log2(max(width, height, 1))) + 1,
            )
        except (KeyError, ValueError, SyntaxError) as exc:
            raise ValueError(f"not a Deep Zoom descriptor: {exc}") from None

    def to_xml(self) -> str:
        """The `.dzi` document, as `DeepZoomGenerator.get_dzi` writes it."""
        image = Element(
            "Image",
            TileSize=str(self.tile_size),
            Overlap=str(self.overlap),
            Format=self.format,
            xmlns=DZI_NAMESPACE,
        )
        SubElement(image, "Size", Width=str(self.width), Height=str(self.height))
        body = tostring(image, encoding="unicode")
        return f"<?xml version='1.0' encoding='UTF-8'?>\n{body}"

    def to_json(self, tiles_url: str | None = None) -> dict[str, Any]:
        """OpenSeadragon's JSON DZI form; `tiles_url` (ending in `_files/`) sets `Url`."""
        image: dict[str, Any] = {
            "xmlns": DZI_NAMESPACE,
            "Format": self.format,
            "Overlap": str(self.overlap),
            "TileSize": str(self.tile_size),
            "Size": {"Width": str(self.width), "Height": str(self.height)},
        }
        if tiles_url is not None:
            image["Url"] = tiles_url
        return {"Image": image}
