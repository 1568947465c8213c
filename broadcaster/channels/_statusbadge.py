"""SVG status badges for READMEs and product UIs: ``badge.svg`` (the page) and one per component.

Why our own few lines: a badge is two labelled boxes; built with ElementTree it is always
well-formed and every text is escaped, whatever a component is called.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

SVG = "http://www.w3.org/2000/svg"
#: indicator → badge colour (white text on each passes WCAG AA contrast)
COLOURS = {"none": "#2e7d32", "maintenance": "#1565c0", "minor": "#b45309", "major": "#c2410c",
           "critical": "#b91c1c"}


def _width(text: str) -> int:
    return 10 + 7 * len(text)  # ~7 px a character at 11 px Verdana; generous rather than clipped


def svg(label: str, message: str, colour: str) -> bytes:
    ET.register_namespace("", SVG)
    lw, mw = _width(label), _width(message)
    root = ET.Element(f"{{{SVG}}}svg", width=str(lw + mw), height="20", role="img")
    ET.SubElement(root, f"{{{SVG}}}title").text = f"{label}: {message}"
    ET.SubElement(root, f"{{{SVG}}}rect", width=str(lw), height="20", fill="#555")
    ET.SubElement(root, f"{{{SVG}}}rect", x=str(lw), width=str(mw), height="20", fill=colour)
    g = ET.SubElement(root, f"{{{SVG}}}g", fill="#fff", attrib={"font-family": "Verdana,DejaVu Sans,sans-serif",
                                                            "font-size": "11", "text-anchor": "middle"})
    ET.SubElement(g, f"{{{SVG}}}text", x=str(lw // 2), y="14").text = label
    ET.SubElement(g, f"{{{SVG}}}text", x=str(lw + mw // 2), y="14").text = message
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
