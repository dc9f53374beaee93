"""A report document (`monitoring.document`) as a PDF that can be mailed: reportlab's platypus,
landscape A4, every table cell wrapped so wide tables stay on the page."""

import io
from pathlib import Path
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.lib.utils import ImageReader
from reportlab.platypus import (
    Flowable,
    Image,
    Paragraph,
    Preformatted,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from monitoring import document as doc_
from monitoring import qa_plots

PAGE = landscape(A4)
MARGIN = 1.5 * cm
WIDTH = PAGE[0] - 2 * MARGIN
_STYLES = getSampleStyleSheet()
CELL = ParagraphStyle("cell", parent=_STYLES["BodyText"], fontSize=7, leading=8.5)
HEAD = ParagraphStyle("head", parent=CELL, fontName="Helvetica-Bold")
CODE = ParagraphStyle("code", parent=_STYLES["Code"], fontSize=6.5, leading=8)
GRID = TableStyle(
    [
        ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
        ("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]
)


def _table(block: doc_.Table) -> list[Flowable]:
    caption = [Paragraph(escape(block.caption), _STYLES["Italic"])] if block.caption else []
    if not block.rows:
        return [*caption, Paragraph("None.", _STYLES["BodyText"])]
    data = [[Paragraph(escape(h), HEAD) for h in block.header]]
    data += [[Paragraph(escape(c), CELL) for c in row] for row in block.rows]
    width = WIDTH / len(block.header)
    table = Table(data, colWidths=[width] * len(block.header), repeatRows=1)
    table.setStyle(GRID)
    return [*caption, table, Spacer(1, 0.3 * cm)]


def _picture(block: doc_.Picture) -> Image:
    w, h = ImageReader(io.BytesIO(block.png)).getSize()
    natural = 72 / qa_plots.DPI  # points per pixel at the resolution the picture was drawn
    scale = min(natural, WIDTH / w, (PAGE[1] - 2 * MARGIN) * 0.8 / h)
    return Image(io.BytesIO(block.png), width=w * scale, height=h * scale)


def _flowables(block: doc_.Block) -> list[Flowable]:
    if isinstance(block, doc_.Text):
        return [Paragraph(escape(block.text), _STYLES["BodyText"])]
    if isinstance(block, doc_.Code):
        return [Preformatted(block.text, CODE, maxLineLength=160)]
    if isinstance(block, doc_.Picture):
        return [_picture(block)]
    return _table(block)


def render_pdf(document: doc_.Document, path: Path) -> Path:
    story: list[Flowable] = [
        Paragraph(escape(document.title), _STYLES["Title"]),
        Paragraph(escape(document.subtitle), _STYLES["BodyText"]),
    ]
    for section in document.sections:
        story.append(Paragraph(escape(section.title), _STYLES["Heading2"]))
        for block in section.blocks:
            story += _flowables(block)
    pdf = SimpleDocTemplate(
        str(path),
        pagesize=PAGE,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=document.title,
    )
    pdf.build(story)
    return path
