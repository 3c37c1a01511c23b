"""Retrieval quality on real documents nobody here wrote: 8 licence texts, 50 questions, 6 of them cross-document.

The texts are the licences Debian ships in /usr/share/common-licenses (Apache-2.0, GPL-3, MPL-2.0,
LGPL-2.1, Artistic as PDFs with a running header, footer and page numbers; BSD as DOCX; CC0-1.0 as
Markdown; GFDL-1.3 as HTML), uploaded through `rag.service.start(settings)` as the chat does. The
questions and their answer keywords were written for this evaluation (issue 21); each names the
document(s) that hold the answer. Scores, over the top 5 passages of `DocumentService.search`:

- file@5: a passage of each expected file is among them;
- keywords@5: every answer keyword appears in them (case, spacing and punctuation ignored);
- cross-document: for questions naming several documents, each document has a passage among them;
- furniture: passages containing a running header/footer line (should be 0).

Run: `.venv/bin/python -m benchmarks.retrieval_eval` (`--show-misses`). Results: printed, and
benchmarks/results/retrieval_eval.json.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import write_results
from core.settings import RagSettings, Settings
from rag import LocalFile
from rag.service import start

LICENSES = Path("/usr/share/common-licenses")
DOCUMENTS = {  # file name -> (source text, format)
    "apache-2.0.pdf": ("Apache-2.0", "pdf"),
    "gpl-3.0.pdf": ("GPL-3", "pdf"),
    "mpl-2.0.pdf": ("MPL-2.0", "pdf"),
    "lgpl-2.1.pdf": ("LGPL-2.1", "pdf"),
    "artistic-license.pdf": ("Artistic", "pdf"),
    "bsd.docx": ("BSD", "docx"),
    "cc0-1.0.md": ("CC0-1.0", "md"),
    "gfdl-1.3.html": ("GFDL-1.3", "html"),
}


@dataclass(frozen=True)
class Question:
    text: str
    files: tuple[str, ...]
    keywords: tuple[str, ...]


def q(text: str, files: str, *keywords: str) -> Question:
    return Question(text, tuple(files.split()), keywords)


QUESTIONS = (
    # Apache-2.0
    q("What kind of copyright license does each Contributor grant under the Apache License?", "apache-2.0.pdf",
      "perpetual", "worldwide", "royalty-free"),
    q("When does the patent license granted under the Apache License terminate?", "apache-2.0.pdf",
      "patent litigation", "terminate"),
    q("What must Apache-licensed redistributions do with the NOTICE text file?", "apache-2.0.pdf",
      "NOTICE", "attribution notices"),
    q("How do I apply the Apache License boilerplate notice to my work?", "apache-2.0.pdf",
      "enclosed by brackets"),
    q("Does the Apache License give permission to use the Licensor's trade names?", "apache-2.0.pdf",
      "trade names", "trademarks"),
    q("How does the Apache License define a Contribution?", "apache-2.0.pdf", "intentionally submitted"),
    # GPL-3
    q("What does the GPL 3 require about Installation Information for a User Product?", "gpl-3.0.pdf",
      "Installation Information", "User Product"),
    q("For how long must a written offer to provide the Corresponding Source be valid under the GPL?",
      "gpl-3.0.pdf", "at least three years"),
    q("What does the GPL say about technological measures and anti-circumvention law?", "gpl-3.0.pdf",
      "effective technological measure"),
    q("Under the GPL, how is a terminated license reinstated?", "gpl-3.0.pdf", "reinstated", "60 days"),
    q("What does the GPL say about combining with work under the GNU Affero General Public License?",
      "gpl-3.0.pdf", "Affero"),
    q("What does Corresponding Source include under the GPL 3?", "gpl-3.0.pdf", "scripts used to control"),
    q("May I charge for copies I convey under the GPL?", "gpl-3.0.pdf", "charge any price or no price"),
    # MPL-2.0
    q("What is a Larger Work in the MPL?", "mpl-2.0.pdf", "Larger Work", "combines Covered Software"),
    q("Under the MPL, how does a violation get cured and rights reinstated?", "mpl-2.0.pdf", "30 days"),
    q("What are Secondary Licenses in the MPL?", "mpl-2.0.pdf", "Secondary License", "GNU General Public License"),
    q("What notice does Exhibit B of the MPL contain?", "mpl-2.0.pdf", "Incompatible With Secondary Licenses"),
    q("Where must litigation relating to the MPL be brought?", "mpl-2.0.pdf", "jurisdiction of the defendant"),
    q("Who is the license steward of the MPL?", "mpl-2.0.pdf", "license steward", "Mozilla Foundation"),
    q("On what basis is Covered Software provided under the MPL's disclaimer of warranty?", "mpl-2.0.pdf",
      "as is"),
    # LGPL-2.1
    q("What is a work that uses the Library under the LGPL?", "lgpl-2.1.pdf", "work that uses the Library"),
    q("Why is the LGPL called the Lesser license?", "lgpl-2.1.pdf", "Lesser", "less to protect"),
    q("Can I switch a library from the LGPL to the ordinary GNU GPL?", "lgpl-2.1.pdf",
      "ordinary GNU General Public License"),
    q("What does the LGPL say about small inline functions in header files?", "lgpl-2.1.pdf", "ten lines or less"),
    q("What linking mechanism does the LGPL accept for combining an application with the library?",
      "lgpl-2.1.pdf", "shared library mechanism"),
    q("May I charge a fee for transferring a copy of an LGPL library?", "lgpl-2.1.pdf",
      "physical act of transferring a copy"),
    # Artistic
    q("What counts as a Reasonable copying fee in the Artistic License?", "artistic-license.pdf",
      "media cost", "duplication charges"),
    q("Can I charge a fee for the Package itself under the Artistic License?", "artistic-license.pdf",
      "not charge a fee for this Package itself"),
    q("What is the Standard Version in the Artistic License?", "artistic-license.pdf", "has not been modified"),
    q("Which fixes may be applied to the Standard Version under the Artistic License?", "artistic-license.pdf",
      "bug fixes", "portability fixes"),
    q("What does the Artistic License say about using the Copyright Holder's name to promote products?",
      "artistic-license.pdf", "endorse or promote"),
    # BSD (DOCX)
    q("What must redistributions of source code retain under the BSD license?", "bsd.docx",
      "retain the above copyright notice"),
    q("May the University's name be used to promote products under the BSD license?", "bsd.docx",
      "endorse or promote", "prior written permission"),
    q("Who holds the copyright in the BSD license text?", "bsd.docx", "Regents of the University of California"),
    q("What must binary redistributions reproduce under the BSD license?", "bsd.docx",
      "reproduce the above copyright notice", "documentation"),
    # CC0 (Markdown)
    q("What rights does CC0 call Copyright and Related Rights?", "cc0-1.0.md", "Copyright and Related Rights"),
    q("What happens under CC0 if the waiver is judged invalid?", "cc0-1.0.md", "Public License Fallback"),
    q("Does CC0 waive trademark or patent rights?", "cc0-1.0.md", "trademark or patent rights"),
    q("Is Creative Commons a law firm according to CC0?", "cc0-1.0.md", "not a law firm"),
    q("Does CC0 cover database rights?", "cc0-1.0.md", "database rights"),
    # GFDL (HTML)
    q("What is a Transparent copy under the GFDL?", "gfdl-1.3.html", "Transparent", "machine-readable"),
    q("Above how many printed copies must GFDL publishers include a Transparent copy?", "gfdl-1.3.html",
      "more than 100"),
    q("What are Invariant Sections in the GFDL?", "gfdl-1.3.html", "Invariant Sections"),
    q("How long may a Front-Cover Text be under the GFDL?", "gfdl-1.3.html", "5 words", "25 words"),
    # cross-document: each named document must have a passage in the top 5
    q("Compare how the Apache License and the MPL treat patent licenses when someone starts patent litigation.",
      "apache-2.0.pdf mpl-2.0.pdf", "patent litigation", "patent infringement claim"),
    q("What do the GPL and the LGPL each say about charging for copies?", "gpl-3.0.pdf lgpl-2.1.pdf",
      "charge any price or no price", "physical act of transferring a copy"),
    q("How do the BSD license and the Artistic License each restrict using names to endorse products?",
      "bsd.docx artistic-license.pdf", "Neither the name of the University", "may not be used to endorse"),
    q("What warranty disclaimers do CC0 and the Apache License contain?", "cc0-1.0.md apache-2.0.pdf",
      "as-is", "WITHOUT WARRANTIES OR CONDITIONS"),
    q("How do the GFDL and the GPL define a Transparent copy and the Corresponding Source?",
      "gfdl-1.3.html gpl-3.0.pdf", "Transparent", "Corresponding Source"),
    q("How long do the MPL and the GPL each give to cure a violation after receiving notice of it?",
      "mpl-2.0.pdf gpl-3.0.pdf", "30 days"),
)
assert len(QUESTIONS) == 50, len(QUESTIONS)


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


# ---------------------------------------------------------------------------------------- corpus


def _paragraphs(text: str) -> list[str]:
    """Paragraphs of a plain-text licence: blank-line separated, lines joined."""
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


def make_pdf(path: Path, text: str, title: str) -> None:
    from fpdf import FPDF

    class Licence(FPDF):
        def header(self) -> None:
            self.set_font("Helvetica", "", 8)
            self.cell(0, 6, f"{path.name} - page {self.page_no()}", new_x="LMARGIN", new_y="NEXT")
            self.ln(2)

        def footer(self) -> None:
            self.set_y(-12)
            self.set_font("Helvetica", "", 8)
            self.cell(0, 6, f"{title} - Page {self.page_no()} of {{nb}}", align="C")

    pdf = Licence()
    pdf.set_auto_page_break(True, 18)
    pdf.add_page()
    for paragraph in _paragraphs(text):
        safe = paragraph.encode("latin-1", "replace").decode("latin-1")
        heading = len(safe) < 70 and not safe.endswith((".", ",", ";", ":"))
        pdf.set_font("Helvetica", "B" if heading else "", 13 if heading else 10)
        pdf.multi_cell(0, 6 if heading else 5, safe, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    pdf.output(str(path))


def make_docx(path: Path, text: str) -> None:
    import docx

    document = docx.Document()
    for paragraph in _paragraphs(text):
        document.add_paragraph(paragraph)
    document.save(str(path))


def make_md(path: Path, text: str, title: str) -> None:
    lines = [f"# {title}", ""]
    for paragraph in _paragraphs(text):
        lines += [paragraph, ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def make_html(path: Path, text: str, title: str) -> None:
    import html

    body = "\n".join(f"<p>{html.escape(p)}</p>" for p in _paragraphs(text))
    path.write_text(f"<html><head><title>{title}</title></head><body><h1>{title}</h1>\n{body}</body></html>",
                    encoding="utf-8")


def make_corpus(folder: Path) -> list[Path]:
    paths = []
    for name, (source, kind) in DOCUMENTS.items():
        text = (LICENSES / source).read_text(encoding="utf-8", errors="replace")
        path = folder / name
        if kind == "pdf":
            make_pdf(path, text, source)
        elif kind == "docx":
            make_docx(path, text)
        elif kind == "md":
            make_md(path, text, source)
        else:
            make_html(path, text, source)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------ run


async def run(show_misses: bool, chunk_size: int | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="retrieval-eval-") as tmp:
        folder = Path(tmp)
        corpus = make_corpus(folder)
        rag = RagSettings() if chunk_size is None else RagSettings(chunk_size=chunk_size)
        settings = Settings(data_dir=folder / "data", rag=rag, _env_file=None)  # type: ignore[call-arg]
        service = await start(settings)
        try:
            started = time.perf_counter()
            results = await service.ingest([LocalFile(p.name, p) for p in corpus], "eval-user", "eval-chat")
            ingest_seconds = time.perf_counter() - started
            assert all(r.ok for r in results), [r.message for r in results]
            passages = sum(r.chunks for r in results)
            furniture = 0
            for name in DOCUMENTS:
                if name.endswith(".pdf"):
                    hits = await service.search(f"{name} page", "eval-user", "eval-chat", k=50)
                    furniture += sum(1 for h in hits if re.search(r"\.pdf - page \d|Page \d+ of \d+", h.text))
            file_hits = keyword_hits = cross_hits = cross_total = 0
            misses = []
            for question in QUESTIONS:
                hits = await service.search(question.text, "eval-user", "eval-chat", k=5)
                files = {h.file_name for h in hits}
                text = _norm(" ".join(h.text for h in hits))
                file_ok = all(f in files for f in question.files)
                keywords_ok = all(_norm(k) in text for k in question.keywords)
                file_hits += file_ok
                keyword_hits += keywords_ok
                if len(question.files) > 1:
                    cross_total += 1
                    cross_hits += file_ok
                if not (file_ok and keywords_ok):
                    misses.append({"question": question.text, "files": sorted(files),
                                   "missing": [k for k in question.keywords if _norm(k) not in text]})
        finally:
            await service.aclose()
    out = {
        "questions": len(QUESTIONS),
        "file_at_5": file_hits,
        "keywords_at_5": keyword_hits,
        "cross_document": f"{cross_hits}/{cross_total}",
        "passages": passages,
        "furniture_passages": furniture,
        "ingest_seconds": round(ingest_seconds, 2),
        "chunk_size": settings.rag.chunk_size,
        "misses": misses,
    }
    print(f"file@5 {file_hits}/{len(QUESTIONS)}  keywords@5 {keyword_hits}/{len(QUESTIONS)}  "
          f"cross-document {cross_hits}/{cross_total}  passages {passages}  furniture passages {furniture}  "
          f"ingest {ingest_seconds:.1f} s")
    if show_misses:
        for miss in misses:
            print("  miss:", miss)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show-misses", action="store_true")
    parser.add_argument("--chunk-size", type=int, help="passage size in characters (default: the setting's)")
    args = parser.parse_args()
    results = asyncio.run(run(args.show_misses, args.chunk_size))
    print(f"written: {write_results('retrieval_eval', results)}")


if __name__ == "__main__":
    main()
