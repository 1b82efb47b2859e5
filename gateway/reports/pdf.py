"""A report's HTML as a PDF: the only code that imports WeasyPrint (Debian's Pango under it)."""

from __future__ import annotations

from weasyprint import HTML, URLFetcher


def to_pdf(html: str) -> bytes:
    """The PDF of a self-contained HTML page: its images are data: URLs, nothing is fetched."""
    fetcher = URLFetcher(allowed_protocols=["data"])
    return bytes(HTML(string=html, url_fetcher=fetcher).write_pdf())
