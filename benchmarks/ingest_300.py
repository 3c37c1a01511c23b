"""The issue-21 ingest target: a 300-page text PDF (~5,300 characters a page, running header and footer),
from upload to "added", through the app's own documents service (`rag.service.start(settings)`, the
embedded defaults: PDFium parsing in the parser processes, all-MiniLM-L6-v2 on ONNX Runtime, Milvus Lite).

Measured per run: wall seconds of `DocumentService.ingest` (what the chat waits between the upload and
the "added" message), CPU seconds of the whole process tree in that time (this process, the parser
processes, Milvus Lite's server), passages, and the load average before and after. Startup (model and
parser warm-up, which the app does once when it starts) is outside the timing, as in the app.

Run: `.venv/bin/python -m benchmarks.ingest_300` (`--pages 300 --runs 3`). Results: printed, and
benchmarks/results/ingest_300.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.common import write_results
from benchmarks.ingest_bench import VERBS, VOCABULARY
from core.settings import Settings
from rag import LocalFile
from rag.service import start


def book_sentence(rng: random.Random) -> str:
    words = rng.sample(VOCABULARY, 9)
    return (f"The {words[0]} of the {words[1]} {rng.choice(VERBS)} the {words[2]} {words[3]} near the "
            f"{words[4]} {words[5]}, and the {words[6]} kept a record of the {words[7]} {words[8]}.")


def make_book(path: Path, pages: int) -> Path:
    """`pages` pages of ~5,300 characters each: a heading every 10 pages, paragraphs, header and footer."""
    from fpdf import FPDF

    class Book(FPDF):
        def header(self) -> None:
            self.set_font("Helvetica", "", 8)
            self.cell(0, 5, "The Harbour Chronicle - collected records", new_x="LMARGIN", new_y="NEXT")

        def footer(self) -> None:
            self.set_y(-10)
            self.set_font("Helvetica", "", 8)
            self.cell(0, 5, f"Page {self.page_no()}", align="C")

    rng = random.Random(21)
    pdf = Book()
    pdf.set_margins(18, 12, 18)
    pdf.set_auto_page_break(True, 14)
    pdf.add_page()
    chapter = 0
    while pdf.page_no() <= pages:
        if pdf.page_no() > chapter * 10:
            chapter += 1
            pdf.set_font("Helvetica", "B", 14)
            pdf.multi_cell(0, 7, f"Chapter {chapter}: The {rng.choice(VOCABULARY)} records",
                           new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 8.6)
        pdf.multi_cell(0, 5.1, " ".join(book_sentence(rng) for _ in range(rng.randint(4, 7))),
                       new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1.5)
    pdf.output(str(path))
    return path


def tree_cpu(process: psutil.Process) -> float:
    """CPU seconds (user + system) of `process` and its live children."""
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


async def run(pages: int, runs: int) -> dict[str, Any]:
    me = psutil.Process()
    out: dict[str, Any] = {"pages": pages, "runs": []}
    with tempfile.TemporaryDirectory(prefix="ingest-300-") as tmp:
        folder = Path(tmp)
        book = make_book(folder / "chronicle.pdf", pages)
        import pypdfium2 as pdfium

        document = pdfium.PdfDocument(str(book))
        real_pages = len(document)
        chars = sum(len(document[i].get_textpage().get_text_range()) for i in range(real_pages))
        document.close()
        out.update(real_pages=real_pages, chars_per_page=round(chars / real_pages))
        settings = Settings(data_dir=folder / "data", _env_file=None)  # type: ignore[call-arg]
        service = await start(settings)
        try:
            await service.embedder.embed(["warm-up"])  # the app loads the model at startup
            await asyncio.gather(*service.pool.warm())
            for run_index in range(runs):
                load_before = os.getloadavg()[0]
                cpu_before, started = tree_cpu(me), time.perf_counter()
                results = await service.ingest([LocalFile(book.name, book)], "bench-user", f"bench-chat-{run_index}")
                seconds = time.perf_counter() - started
                cpu = tree_cpu(me) - cpu_before
                assert results[0].outcome == "ingested", results[0].message
                row = {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "passages": results[0].chunks,
                       "load_before": load_before, "load_after": os.getloadavg()[0]}
                out["runs"].append(row)
                print(f"run {run_index + 1}: {seconds:.1f} s wall, {cpu:.1f} CPU-s, {results[0].chunks} passages, "
                      f"load {load_before:.2f} -> {row['load_after']:.2f}", flush=True)
                await service.delete_chat("bench-user", f"bench-chat-{run_index}")
        finally:
            await service.aclose()
    out["median_seconds"] = statistics.median(r["seconds"] for r in out["runs"])
    out["median_cpu_seconds"] = statistics.median(r["cpu_seconds"] for r in out["runs"])
    cpuinfo = Path("/proc/cpuinfo").read_text()  # noqa: ASYNC240 - a small local file, once
    out["cpu_model"] = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                             if line.startswith("model name")), "")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = asyncio.run(run(args.pages, args.runs))
    print(f"median {results['median_seconds']:.1f} s wall, {results['median_cpu_seconds']:.1f} CPU-s, "
          f"{results['real_pages']} pages of ~{results['chars_per_page']} characters")
    print(f"written: {write_results('ingest_300', results)}")


if __name__ == "__main__":
    main()
