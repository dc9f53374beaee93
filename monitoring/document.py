"""A report as plain blocks (text, tables, pictures, code), written as one self-contained HTML
page, a Markdown copy with its pictures beside it, and a PDF (`monitoring.pdf`): the weekly QA
report and the monthly model QA share it, so the three always hold the same sections."""

import base64
import html
import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str | None = None


@dataclass(frozen=True)
class Picture:
    name: str  # file name stem, unique in the document
    png: bytes
    alt: str


@dataclass(frozen=True)
class Code:
    text: str


Block = Text | Table | Picture | Code


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


@dataclass
class Document:
    title: str
    subtitle: str
    sections: list[Section]


CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}caption{text-align:left;font-style:italic;padding:.2em 0}"
    "pre{background:#f7f7f7;padding:.6em;overflow-x:auto}img{max-width:100%}"
    "nav a{margin-right:1em}"
)


def _html_block(block: Block) -> str:
    if isinstance(block, Text):
        return f"<p>{html.escape(block.text)}</p>"
    if isinstance(block, Code):
        return f"<pre>{html.escape(block.text)}</pre>"
    if isinstance(block, Picture):
        data = base64.b64encode(block.png).decode()
        return f'<img alt="{html.escape(block.alt)}" src="data:image/png;base64,{data}">'
    if not block.rows:
        return f"<p>{html.escape(block.caption or '')} None.</p>"
    caption = f"<caption>{html.escape(block.caption)}</caption>" if block.caption else ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block.rows
    )
    return f"<table>{caption}<tr>{head}</tr>{body}</table>"


def render_html(doc: Document) -> str:
    nav = "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in doc.sections)
    parts = [f"<h1>{html.escape(doc.title)}</h1>", f"<p>{html.escape(doc.subtitle)}</p>"]
    parts.append(f"<nav>{nav}</nav>")
    for s in doc.sections:
        inner = "".join(_html_block(b) for b in s.blocks)
        parts.append(f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>{inner}</section>')
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(doc.title)}</title>"
        f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>"
    )


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_block(block: Block, stem: str) -> str:
    if isinstance(block, Text):
        return block.text
    if isinstance(block, Code):
        return f"```\n{block.text}\n```"
    if isinstance(block, Picture):
        return f"![{block.alt}]({stem}-{block.name}.png)"
    if not block.rows:
        return f"{block.caption or ''} None.".strip()
    lines = [f"*{block.caption}*", ""] if block.caption else []
    lines += [
        "| " + " | ".join(map(_md_cell, block.header)) + " |",
        "|" + "---|" * len(block.header),
    ]
    lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows]
    return "\n".join(lines)


def render_markdown(doc: Document, stem: str) -> str:
    parts = [f"# {doc.title}", doc.subtitle]
    for s in doc.sections:
        parts.append(f"## {s.title}")
        parts += [_md_block(b, stem) for b in s.blocks]
    return "\n\n".join(parts) + "\n"


def pictures(doc: Document) -> list[Picture]:
    return [b for s in doc.sections for b in s.blocks if isinstance(b, Picture)]
