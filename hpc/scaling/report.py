"""``write_report``: one self-contained HTML file, or Markdown with PNG files beside it.

The content is built once as a list of blocks (headings, paragraphs, lists, tables,
figures) and rendered to either format, so that HTML and Markdown say the same things.
The HTML embeds its images as base64 data URIs and references nothing outside itself.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from hpc.atomic import write_bytes
from hpc.errors import UserError
from hpc.scaling.analysis import StudyAnalysis
from hpc.scaling.data import Placement
from hpc.scaling.estimate import format_estimate, format_number

FORMATS = {"html": ".html", "md": ".md"}


@dataclass
class Block:
    kind: str                    # "h1" | "h2" | "p" | "list" | "table" | "figure"
    text: str = ""
    items: list | None = None    # list items, or table rows (first row: the header)
    colours: list | None = None  # table: a background colour (or None) per body cell


# POP's traffic lights: efficiencies at or above 0.8 are good, below 0.6 poor.
POP_LEVELS = ((0.8, "#b7e1b0"), (0.6, "#fbe3a1"), (-float("inf"), "#f4b6b0"))


def _meta_rows(meta: dict) -> list[list[str]]:
    return [["field", "value"]] + [[str(k), str(v)] for k, v in meta.items()]


def _summary(a: StudyAnalysis) -> list[Block]:
    base = a.points[0]
    frac = "f" if a.kind == "strong" else "α"
    sel = a.selected
    pred = sel.predictions
    facts = [
        f"Baseline: the smallest rank count fitted, p0 = {a.baseline_ranks}, "
        f"T(p0) = {format_estimate(a.baseline_time)} s (geometric mean of {base.repeats} "
        "repeats); speedups and efficiencies are relative to it.",
        f"Fitted serial fraction {frac} = {format_estimate(a.law.fraction)} "
        f"({'Amdahl' if a.kind == 'strong' else 'Gustafson'}, 95% interval).",
        f"Selected model: {sel.model}: T(p) = {sel.spec.formula}.",
        f"Maximum speedup: {pred.describe_max()}.",
        f"Efficiency < 80%: {pred.describe_threshold(0.8)}; efficiency < 50%: "
        f"{pred.describe_threshold(0.5)}.",
    ]
    if a.suggested_ranks:
        facts.append("To tell serial code from overhead, add the rank counts "
                     + ", ".join(map(str, a.suggested_ranks)) + " (see the warnings).")
    facts.append(INTERVALS)
    blocks = [Block("h2", "Summary"),
              Block("p", f"{a.kind.capitalize()} scaling. Verdict: {a.dominant or '?'}. "
                         f"{a.diagnosis}" if a.dominant else
                         f"{a.kind.capitalize()} scaling. Verdict: {a.comparison.verdict}."),
              Block("p", f"Fits: {a.comparison.verdict}. {a.comparison.explanation}"),
              Block("list", items=facts)]
    if a.warnings:
        blocks += [Block("h2", "Warnings"), Block("list", items=list(a.warnings))]
    if a.excluded:
        blocks += [Block("h2", "Excluded points"),
                   Block("list", items=[f"{e.label or '?'} ({e.ranks} ranks): {e.reason}"
                                        for e in a.excluded])]
    return blocks


INTERVALS = ("What the 95% intervals cover: the noise between repeats (and, for fitted "
             "parameters, the misfit of the model). What they do not cover: systematic "
             "effects the same in every repeat, such as overhead the model lacks or a busy "
             "machine; those show as a model's misfit, a rising Karp–Flatt, or the points "
             "left out above.")


def _all_points(a: StudyAnalysis) -> list:
    return sorted([*a.points, *a.flagged_points], key=lambda pt: pt.ranks)


def _placement_cells(pt, placement: dict[int, Placement]) -> list[str]:
    where = placement.get(pt.ranks)
    if where is None:
        return ["–", "–"]
    return [where.label(), "intra-node" if where.intra_node else "inter-node"]


def _points_table(a: StudyAnalysis, placement: dict[int, Placement] | None = None
                  ) -> list[list[str]]:
    pts = _all_points(a)
    phases = sorted({n for pt in pts for n in pt.phases})
    ks = "Karp–Flatt e" if a.kind == "strong" else "α_e"
    nodes = ["nodes × ranks", "placement"] if placement else []
    rows = [["ranks", *nodes, "size", "repeats", "time (s)", "speedup", "efficiency", ks]
            + [f"{n} (s)" for n in phases] + ["outlier repeats (s)", "fitted"]]
    for pt in pts:
        cells = _placement_cells(pt, placement) if placement else []
        rows.append([str(pt.ranks), *cells, str(pt.size), str(pt.repeats),
                     format_estimate(pt.time),
                     format_estimate(pt.speedup), format_estimate(pt.efficiency),
                     format_estimate(pt.karp_flatt) if pt.karp_flatt else "–"]
                    + [format_estimate(pt.phases[n]) if n in pt.phases else "–"
                       for n in phases]
                    + [", ".join(format_number(t, 4) for t in pt.outliers) or "–",
                       f"no: {pt.excluded}" if pt.excluded else "yes"])
    return rows


def pop_table(a: StudyAnalysis) -> tuple[list[list[str]], list[list[str | None]]]:
    """POP metrics: rows = metrics, columns = rank counts (* = not fitted); colours."""
    from hpc.scaling.pop import METRICS

    pts = [pt for pt in _all_points(a) if pt.pop is not None]
    rows = [["metric"] + [f"{pt.ranks}{'*' if pt.excluded else ''}" for pt in pts]]
    colours = []
    for metric in METRICS:
        values = [pt.pop[metric] for pt in pts]
        rows.append([metric] + [format_number(v, 2) for v in values])
        colours.append([None] + [next(c for lo, c in POP_LEVELS if v >= lo) for v in values])
    return rows, colours


def _pop_blocks(a: StudyAnalysis) -> list[Block]:
    rows, colours = pop_table(a)
    blocks = [Block("h2", "POP efficiency metrics")]
    if len(rows[0]) == 1:
        return blocks + [Block("p", "Not available: the runs recorded no per-rank compute "
                                    "phase (an external command's runs have only its total "
                                    "time).")]
    return blocks + [
        Block("p", "Columns are rank counts (* = left out of the fits); green ≥ 0.8, "
                   "yellow ≥ 0.6, red below. Load balance = mean/max of the ranks' compute "
                   "time; communication efficiency = max compute / runtime; parallel "
                   "efficiency = their product; computation scalability = total compute at "
                   "the baseline / total compute here (per unit of work for weak scaling); "
                   "global efficiency = parallel efficiency × computation scalability "
                   "(docs/SCALING.md)."),
        Block("table", items=rows, colours=colours)]


def _fits_table(a: StudyAnalysis) -> list[list[str]]:
    frac = "f" if a.kind == "strong" else "α"
    crit = a.comparison.criterion.split()[0]
    rows = [["model", "T(p)", "T0 (s)", frac, "c (s)", crit, f"Δ{crit}", "weight", ""]]
    for fit in a.fits:
        score = a.comparison.scores[fit.model]
        value = score["aicc"] if crit == "AICc" else score["aic"]
        rows.append([fit.model, fit.spec.formula, format_estimate(fit.t0),
                     format_estimate(fit.fraction),
                     format_estimate(fit.overhead) if fit.overhead else "–",
                     format_number(value, 5), format_number(score["delta"], 3),
                     format_number(score["weight"], 2),
                     "selected" if fit.model == a.comparison.selected else ""])
    return rows


def _trend_blocks(a: StudyAnalysis) -> list[Block]:
    if a.karp_flatt_trend is None:
        return []
    what = "Karp–Flatt e" if a.kind == "strong" else "α_e"
    return [Block("table", items=[["trend", "per doubling of ranks"],
                                  [f"change of {what}", format_estimate(a.karp_flatt_trend)]])]


def _predictions_table(a: StudyAnalysis) -> list[list[str]]:
    rows = [["model", "maximum speedup", "efficiency < 80%", "efficiency < 50%"]]
    for fit in a.fits:
        pr = fit.predictions
        rows.append([fit.model, pr.describe_max(), pr.describe_threshold(0.8),
                     pr.describe_threshold(0.5)])
    return rows


def _method(a: StudyAnalysis) -> list[str]:
    return [
        "Times per rank count are geometric means of the repeats that are not outliers: a "
        "repeat is an outlier when its log-time lies more than 3.5 robust standard "
        "deviations (1.4826 × the median absolute deviation) from the median of its "
        "point's repeats and more than 10% away; outliers are listed in the points table.",
        "Points measured with more ranks × threads than the cores available (affinity, "
        "cgroup or Slurm limit) or while other processes kept the cores busy (from "
        "/proc/stat) are shown but not fitted, unless asked with --include-oversubscribed.",
        "Fits minimise squared "
        "differences of log-times (timing noise is relative) with scipy.optimize.least_squares, "
        "bounds 0 ≤ f, α ≤ 1 and c ≥ 0.",
        f"95% intervals: {a.ci_method}; {a.n_boot} resamples, seed {a.seed}.",
        "Model selection: overhead models are fitted only with 5 or more rank counts, and "
        "one is preferred only when it lowers "
        f"{a.comparison.criterion.split()[0]} by more than 2 against the law it extends "
        "and the Karp–Flatt trend rises (interval above 0).",
        "Weak scaling uses the scaled speedup S = (p/p0)·T(p0)/T(p) and Gustafson's law "
        "S = q − α(q − 1), q = p/p0. Formulas and conventions: docs/SCALING.md in hpc-suite.",
    ]


def _placement_note(a: StudyAnalysis, placement: dict[int, Placement]) -> Block:
    """What separates the intra-node points from the inter-node ones, as recorded."""
    ranks = [pt.ranks for pt in _all_points(a) if pt.ranks in placement]
    intra = [r for r in ranks if placement[r].intra_node]
    inter = [r for r in ranks if not placement[r].intra_node]

    def names(group: list[int]) -> str:
        return ", ".join(f"{r} ({placement[r].label()})" for r in group) or "none"

    return Block("p", "Placement, from the hosts each point's ranks ran on (not the nodes "
                 f"the study asked for): intra-node points (1 node): {names(intra)}; "
                 f"inter-node points: {names(inter)}. Inter-node points exchange their "
                 "messages over the interconnect, intra-node ones through shared memory: "
                 "a step in efficiency where the points leave one node is the network's "
                 "cost, not the program's serial fraction.")


def build_blocks(a: StudyAnalysis, meta: dict, title: str,
                 placement: dict[int, Placement] | None = None) -> list[Block]:
    from hpc.scaling.plots import FIGURES

    blocks = [Block("h1", f"Scaling report: {title}")]
    if meta:
        blocks += [Block("h2", "Study"), Block("table", items=_meta_rows(meta))]
    blocks += _summary(a)
    blocks.append(Block("h2", "Plots"))
    blocks += [Block("figure", name, [caption]) for name, (_, caption) in FIGURES.items()]
    blocks += [Block("h2", "Points (95% intervals from the repeats)"),
               Block("table", items=_points_table(a, placement)),
               *([_placement_note(a, placement)] if placement else []), *_pop_blocks(a),
               Block("h2", "Fitted models"), Block("table", items=_fits_table(a)),
               *_trend_blocks(a),
               Block("h2", "Predictions"), Block("table", items=_predictions_table(a)),
               Block("h2", "Method"), Block("list", items=_method(a))]
    return blocks


_CSS = """body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:90%}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f0f0f0}figure{margin:1.5em 0}img{max-width:100%}
figcaption{color:#555;font-size:90%}"""


def _html(blocks: list[Block], images: dict[str, bytes]) -> str:
    esc = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{esc(blocks[0].text)}</title><style>{_CSS}</style></head><body>"]
    for b in blocks:
        if b.kind in ("h1", "h2", "p"):
            out.append(f"<{b.kind}>{esc(b.text)}</{b.kind}>")
        elif b.kind == "list":
            out.append("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in b.items) + "</ul>")
        elif b.kind == "table":
            head, *rows = b.items
            colours = b.colours or [[None] * len(r) for r in rows]
            cells = ["<tr>" + "".join(f"<th>{esc(c)}</th>" for c in head) + "</tr>"]
            cells += ["<tr>" + "".join(_td(c, k) for c, k in zip(r, ks, strict=True)) + "</tr>"
                      for r, ks in zip(rows, colours, strict=True)]
            out.append("<table>" + "".join(cells) + "</table>")
        elif b.kind == "figure":
            data = base64.b64encode(images[b.text]).decode("ascii")
            out.append(f'<figure><img alt="{esc(b.text)}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{esc(b.items[0])}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _td(text: str, colour: str | None) -> str:
    style = f' style="background:{colour}"' if colour else ""
    return f"<td{style}>{html.escape(text)}</td>"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(blocks: list[Block], files: dict[str, str]) -> str:
    out = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {b.text}")
        elif b.kind == "h2":
            out.append(f"## {b.text}")
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "list":
            out.append("\n".join(f"- {i}" for i in b.items))
        elif b.kind == "table":
            head, *rows = b.items
            lines = ["| " + " | ".join(_md_cell(c) for c in head) + " |",
                     "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
            out.append("\n".join(lines))
        elif b.kind == "figure":
            out.append(f"![{b.items[0]}]({files[b.text]})\n\n*{b.items[0]}*")
    return "\n\n".join(out) + "\n"


def report_path(out: Path, fmt: str) -> Path:
    """``out`` itself, or ``out/report.<ext>`` when ``out`` is a folder."""
    if fmt not in FORMATS:
        raise UserError(f"unknown report format {fmt!r}; use one of: {', '.join(FORMATS)}")
    out = Path(out)
    return out / f"report{FORMATS[fmt]}" if out.is_dir() else out


def write_report(analysis: StudyAnalysis, meta: dict, out: Path, fmt: str = "html",
                 placement: dict[int, Placement] | None = None) -> Path:
    """Write the report of ``analysis`` to ``out`` (a file, or a folder for report.html/.md).

    ``meta`` (study name, workload, backend, host, git, ...) is shown as given; its "study"
    or "name" entry titles the report and the figures. ``placement`` (a node ladder's:
    where each rank count's ranks ran) labels the points "N nodes × R ranks" and marks
    them intra- or inter-node. HTML is one self-contained file; Markdown writes
    ``<stem>-<figure>.png`` beside the ``.md``. Returns the report's path.
    """
    from hpc.scaling.plots import render_png

    path = report_path(out, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    title = str(meta.get("study") or meta.get("name") or "scaling study")
    blocks = build_blocks(analysis, meta, title, placement)
    images = render_png(analysis, title, placement)
    if fmt == "html":
        write_bytes(path, _html(blocks, images).encode("utf-8"))
        return path
    files = {}
    for name, png in images.items():
        files[name] = f"{path.stem}-{name}.png"
        write_bytes(path.with_name(files[name]), png)
    write_bytes(path, _markdown(blocks, files).encode("utf-8"))
    return path
