"""The `workbench data prepare` report as markdown (report.md) and as rich tables (the terminal).

    from workbench.data.prepare_report import to_markdown, print_report
    print_report(json.load(open("runs/data/report.json")), rich.console.Console())

Both read the report dict that prepare() returns and saves as report.json (keys: version, created,
inputs, out, input, steps[], retained, output, seconds, throughput, config, and `mix` for a mix of
sources). Characters are measured at every step; tokens only after tokenization, so the "tokens out"
column of earlier steps is the characters divided by the output's characters per token — an
estimate, marked with "~". A mix adds two tables: per source the requested and achieved share of the
train tokens, epochs, repeats; and per source the documents each step removed.
"""

from __future__ import annotations


def _rows(report: dict) -> list[list[str]]:
    cpt = next(s for s in report["steps"] if s["name"] == "tokenize").get("chars_per_token") or 1
    rows = []
    total = sum(s["seconds"] for s in report["steps"]) or 1
    for s in report["steps"]:
        kept = s["docs_out"] / s["docs_in"] if s["docs_in"] else 1.0
        tokens = f"{s['tokens_out']:,}" if "tokens_out" in s else f"~{s['chars_out'] / cpt:,.0f}"
        rows.append([s["name"], f"{s['docs_in']:,}", f"{s['docs_out']:,}", f"{kept:.1%}",
                     f"{s['chars_out']:,}", tokens, f"{s['seconds']:.2f}", f"{s['seconds'] / total:.0%}"])
    return rows


HEADER = ["step", "docs in", "docs out", "kept", "chars out", "tokens out", "s", "time"]


def _summary(report: dict) -> list[str]:
    out, inp, r = report["output"], report["input"], report["retained"]
    kept = report["steps"][-1]["docs_out"]  # what the pipeline kept; a mix's shards may repeat or leave out some
    mix = report.get("mix")
    mixed = (f"; the mix of {len(mix['sources'])} sources holds {out['documents']:,} of them (repeats included)"
             if mix else "")
    lines = [f"{inp['documents']:,} documents ({inp['bytes'] / 1e6:.2f} MB) from {inp['files']} file(s) -> "
             f"{kept:,} kept ({r['documents']:.1%} of documents, {r['chars']:.1%} of characters){mixed}, "
             f"{out['tokens']:,} tokens ({out['dtype']}, tokenizer {out['tokenizer']['name']})",
             f"train: {out['train']['documents']:,} documents, {out['train']['tokens']:,} tokens, "
             f"{out['train']['windows']:,} windows of {out['seq_len']}; val: {out['val']['documents']:,} "
             f"documents, {out['val']['tokens']:,} tokens, {out['val']['windows']:,} windows",
             f"{report['seconds']:.1f} s: {report['throughput']['mb_per_s']:.2f} MB/s, "
             f"{report['throughput']['docs_per_s']:,.0f} docs/s"]
    if out.get("val_moved_documents"):
        lines.append(f"val held less than one window, so the last {out['val_moved_documents']} train "
                     "document(s) went to val")
    if inp["skipped"]:
        lines.append("skipped while reading: " + ", ".join(f"{n} {k}" for k, n in inp["skipped"].items()))
    return lines


def _classifier_lines(s: dict, docs_read: int) -> list[str]:
    """The classifier step: share kept by threshold, the score histogram, examples from both ends."""
    sc = s["scores"]
    n = sc["documents"]
    lines = [f"model {s['model']}, threshold {s['threshold']:g}: {n:,} documents scored, mean score {sc['mean']:.3f}",
             "kept at each threshold (of the documents scored, of all documents read):"]
    lines += [f"    {float(t):.2f}: {k / max(n, 1):6.1%}  {k / max(docs_read, 1):6.1%}" for t, k in sc["kept_at"].items()]
    lines.append("score histogram:")
    edges, counts = sc["histogram"]["edges"], sc["histogram"]["counts"]
    top = max(counts) or 1
    for lo, hi, c in zip(edges, edges[1:], counts):
        lines.append(f"    {lo:.1f}-{hi:.1f} {'#' * round(30 * c / top):<30} {c:,}")
    for end in ("lowest", "highest"):
        if sc[end]:
            lines.append(f"{end} scores:")
            lines += [f"    {e['score']:.3f} {e['text']!r}" for e in sc[end]]
    return lines


def _details(report: dict) -> list[tuple[str, list[str]]]:
    """(heading, bullet lines) per section: removals with examples, lines, PII, clusters."""
    sections = []
    for s in report["steps"]:
        items = []
        for reason, n in s["removed"].items():
            items.append(f"{reason}: {n:,}")
            items += [f"    e.g. {ex!r}" for ex in s["examples"].get(reason, [])]
        if s.get("lines_removed"):
            items.append("lines removed (document kept): " +
                         ", ".join(f"{k!r} {n:,}" for k, n in s["lines_removed"].items()))
        if "replacements" in s:
            items.append("replaced: " + ", ".join(f"{k} {n:,}" for k, n in s["replacements"].items()))
        if "scores" in s:
            items += _classifier_lines(s, report["steps"][0]["docs_in"])
        for c in s.get("clusters", []):
            items += _cluster_lines(c)
        if items:
            sections.append((s["name"], items))
    return sections


def _cluster_lines(c: dict) -> list[str]:
    """A near-duplicate cluster: its size and first (kept) member, then one indented line per other
    listed member, kept ones first (a later bridge merged their clusters), then removed ones in input
    order. Reports written before members were recorded have only the first line."""
    kept = c["size"] - c["duplicates_removed"]
    also = f", {kept} kept" if kept > 1 else ""
    lines = [f"cluster of {c['size']} ({c['duplicates_removed']} removed{also}), kept: {c['kept']!r}"]
    members = c.get("members", [])[1:]  # the first is `kept`
    lines += [f"    {'also kept' if m['kept'] else 'removed'}: {m['text']!r}" for m in members]
    if members and (hidden := c["size"] - 1 - len(members)) > 0:
        lines.append(f"    ... {hidden} more not shown")
    return lines


MIX_HEADER = ["source", "weight", "share", "train tokens", "epochs", "docs in mix", "repeats", "unused", "val docs"]
COUNT_STEPS = {"normalise": "normalise", "boilerplate_lines": "boilerplate", "quality": "quality",
               "classifier": "classifier", "exact_dedup": "exact dup", "near_dedup": "near dup"}


def _names(report: dict, short: bool) -> list[str]:
    """The sources' paths, or (the terminal's narrow tables) their file names when those are distinct."""
    paths = [s["path"] for s in report["mix"]["sources"]]
    names = [path.rstrip("/").rsplit("/", 1)[-1] for path in paths]
    return names if short and len(set(names)) == len(names) else paths


def _mix_rows(report: dict, short: bool = False) -> list[list[str]]:
    """One row per source of a mix: requested and achieved share of the train tokens, epochs, documents."""
    return [[name, f"{s['weight']:.3f}", f"{s['share']:.3f}", f"{s['tokens']:,}", f"{s['epochs']:.2f}",
             f"{s['documents_in_mix']:,}", f"{s['repeats']:,}", f"{s['unused_documents']:,}",
             f"{s['val']['documents']:,}"] for name, s in zip(_names(report, short), report["mix"]["sources"])]


def _source_counts(report: dict, short: bool = False) -> tuple[list[str], list[list[str]]]:
    """Per source of a mix: documents read, removed by each step, kept (dedup across sources included)."""
    names = [n for n in COUNT_STEPS if any(s["name"] == n for s in report["steps"])]
    rows = []
    for source, src in zip(_names(report, short), report["mix"]["sources"]):
        steps = {s["name"]: s for s in src["steps"]}
        rows.append([source, f"{steps['read']['docs_in']:,}"]
                    + [f"{steps[n]['docs_in'] - steps[n]['docs_out']:,}" for n in names]
                    + [f"{steps['tokenize']['docs_out']:,}", f"{steps['tokenize']['tokens_out']:,}"])
    return ["source", "read", *[COUNT_STEPS[n] for n in names], "kept", "tokens"], rows


def _mix_lines(report: dict) -> list[str]:
    m = report["mix"]
    lines = [f"train tokens: {m['tokens']:,} ({m['basis']}), seed {m['seed']}; shares are of the train split, "
             "val holds each source's held-out documents once"]
    if m["max_share_error"] > 0.01:
        lines.append(f"a share misses its weight by {m['max_share_error']:.3f}: a source has too few documents for "
                     "this size (documents are not cut)")
    return lines


def _table_md(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)] + \
        ["| " + " | ".join(r) + " |" for r in rows] + [""]


def to_markdown(report: dict) -> str:
    lines = ["# Data preparation report", "", f"Created {report['created']}; inputs: "
             + ", ".join(f"`{i}`" for i in report["inputs"]), ""]
    lines += [f"- {line}" for line in _summary(report)] + [""]
    lines += _table_md(HEADER, _rows(report))
    if report.get("mix"):
        lines += ["## mix", ""] + [f"- {line}" for line in _mix_lines(report)] + [""]
        lines += _table_md(MIX_HEADER, _mix_rows(report))
        lines += ["Documents per source: read, removed by each step, kept:", ""] + _table_md(*_source_counts(report))
    for heading, items in _details(report):
        lines += [f"## {heading}", ""]
        for item in items:
            lines.append(f"  - {item.strip()}" if item.startswith("    ") else f"- {item}")
        lines.append("")
    return "\n".join(lines)


def print_report(report: dict, console) -> None:
    from rich.table import Table
    from rich.text import Text

    from workbench.inspector import printable

    from rich import box

    def table(title: str, header: list[str], rows: list[list[str]]):
        t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for i, h in enumerate(header):  # numbers never cut: headers wrap instead
            t.add_column(h, justify="left" if i == 0 else "right", min_width=max(len(r[i]) for r in rows))
        for row in rows:
            t.add_row(*row)
        console.print(t)

    table("workbench data prepare (tokens: ~ = estimated from characters)", HEADER, _rows(report))
    if report.get("mix"):
        table("mix: the train split's shares of tokens", MIX_HEADER, _mix_rows(report, short=True))
        for line in _mix_lines(report):
            console.print(Text(line))
        table("documents per source: read, removed by each step, kept", *_source_counts(report, short=True))
    for heading, items in _details(report):
        console.print(Text(heading, style="bold"))
        for item in items:
            console.print(Text("  " + printable(item), style="dim" if item.startswith("    ") else ""),
                          soft_wrap=False, overflow="ellipsis", no_wrap=True)
    for line in _summary(report):
        console.print(Text(line))
    console.print(Text(f"report: {report['out']}/report.md, report.json", style="dim"))
