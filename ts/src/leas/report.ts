/**
 * The LEAS HTML report: one self-contained file that opens offline (no
 * network, no external scripts, fonts or styles; the one script, the table
 * sorter, is inline). Every text that comes from the data (question text,
 * ids, data sources, meta) is escaped.
 *
 * The charts are small hand-written SVGs (a histogram, stacked bars, a line
 * chart): a few rects and paths each, so a chart library would only add
 * weight and a network or bundling step to a file that must open offline.
 * Data marks are rect.bar, path.line, path.band, path.ci and circles; axes,
 * grid lines, the zero mark and legend swatches carry their own classes.
 */
import { escapeHtml } from "../domain/html.ts"
import { COEFFICIENTS, type Coefficient, VARIANT_LABELS, VARIANTS } from "./algebra.ts"
import type { CosineDistribution, GradientAnalysis, GradientSet, Histogram, LeasAnalysis, Share, Shares, Spread } from "./stats.ts"

/** What the report says about the run; `title` heads the page, the other keys are listed. */
export interface ReportMeta {
  readonly title?: string
  readonly [key: string]: unknown
}

// ---------------------------------------------------------------------------
// Text

export { escapeHtml }

const num = (x: number, digits = 3): string => (Number.isFinite(x) ? x.toFixed(digits) : String(x))
const pct = (x: number): string => `${(100 * x).toFixed(1)}%`
const shareText = (s: Share): string => `${pct(s.share)} [${pct(s.ci[0])}, ${pct(s.ci[1])}]`
const metaValue = (v: unknown): string => (typeof v === "string" ? v : JSON.stringify(v) ?? String(v))

const COLORS = { interference: "#c0392b", synergy: "#2e6fbd", zero: "#9a9a9a", bar: "#5b6f82" } as const

const LAMBDA23 = "λ<sub>23</sub>"
const COEFFICIENT_LABELS: Record<Coefficient, string> = { l1: "λ1", l2: "λ2", l3: "λ3", l12: "λ12", l13: "λ13", l23: "λ23" }

// ---------------------------------------------------------------------------
// Charts

const W = 640
const H = 240
const M = { left: 48, right: 16, top: 16, bottom: 40 }

const svgOpen = (label: string, height = H): string =>
  `<svg class="chart" viewBox="0 0 ${W} ${height}" width="${W}" height="${height}" role="img" aria-label="${escapeHtml(label)}">`

const r2 = (x: number): string => (Math.round(x * 100) / 100).toString()

/** A histogram: one rect per non-empty bin; a dashed line at `mark` when it is inside the range. */
const histogramSvg = (h: Histogram, label: string, xLabel: string, mark?: number): string => {
  const lo = h.edges[0]!
  const hi = h.edges[h.edges.length - 1]!
  const top = Math.max(1, ...h.counts)
  const x = (v: number) => M.left + ((v - lo) / (hi - lo)) * (W - M.left - M.right)
  const y = (c: number) => H - M.bottom - (c / top) * (H - M.top - M.bottom)
  const parts = [svgOpen(label)]
  parts.push(`<path class="axis" d="M${M.left} ${M.top}V${H - M.bottom}H${W - M.right}" fill="none" stroke="#333"/>`)
  h.counts.forEach((c, i) => {
    if (c === 0) return
    const x0 = x(h.edges[i]!)
    const x1 = x(h.edges[i + 1]!)
    parts.push(`<rect class="bar" x="${r2(x0 + 0.5)}" y="${r2(y(c))}" width="${r2(Math.max(1, x1 - x0 - 1))}" height="${r2(y(0) - y(c))}" fill="${COLORS.bar}"><title>[${num(h.edges[i]!, 2)}, ${num(h.edges[i + 1]!, 2)}): ${c}</title></rect>`)
  })
  const every = Math.max(1, Math.ceil((h.edges.length - 1) / 10))
  h.edges.forEach((e, i) => {
    if (i % every !== 0 && i !== h.edges.length - 1) return
    parts.push(`<text x="${r2(x(e))}" y="${H - M.bottom + 14}" text-anchor="middle">${escapeHtml(Number(e.toPrecision(4)).toString())}</text>`)
  })
  parts.push(`<text x="${M.left - 6}" y="${M.top + 4}" text-anchor="end">${top}</text><text x="${M.left - 6}" y="${H - M.bottom}" text-anchor="end">0</text>`)
  parts.push(`<text x="${(M.left + W - M.right) / 2}" y="${H - 6}" text-anchor="middle">${xLabel}</text>`)
  if (mark !== undefined && mark >= lo && mark <= hi) {
    parts.push(`<path class="mark" d="M${r2(x(mark))} ${M.top - 6}V${H - M.bottom}" stroke="#000" stroke-dasharray="4 3" fill="none"/>`)
    parts.push(`<text x="${r2(x(mark) + 4)}" y="${M.top}">${escapeHtml(String(mark))}</text>`)
  }
  parts.push("</svg>")
  return parts.join("")
}

/** One stacked bar per row (interference | zero | synergy), the interference CI as a whisker. */
const sharesSvg = (rows: ReadonlyArray<{ readonly label: string; readonly shares: Shares }>, label: string): string => {
  const rowH = 28
  const left = 140
  const height = M.top + rows.length * rowH + 36
  const x = (f: number) => left + f * (W - left - M.right)
  const parts = [svgOpen(label, height)]
  rows.forEach((row, i) => {
    const y = M.top + i * rowH
    const s = row.shares
    let at = 0
    for (const kind of ["interference", "zero", "synergy"] as const) {
      const f = s[kind].share
      if (f > 0) {
        parts.push(`<rect class="bar" x="${r2(x(at))}" y="${y}" width="${r2(x(at + f) - x(at))}" height="${rowH - 8}" fill="${COLORS[kind]}"><title>${escapeHtml(row.label)}: ${kind} ${shareText(s[kind])}</title></rect>`)
      }
      at += f
    }
    const [c0, c1] = s.interference.ci
    const mid = y + (rowH - 8) / 2
    parts.push(`<path class="ci" d="M${r2(x(c0))} ${mid}H${r2(x(c1))}M${r2(x(c0))} ${mid - 5}V${mid + 5}M${r2(x(c1))} ${mid - 5}V${mid + 5}" stroke="#000" stroke-width="1.5" fill="none"/>`)
    parts.push(`<text x="${left - 6}" y="${mid + 4}" text-anchor="end">${escapeHtml(row.label.length > 20 ? `${row.label.slice(0, 19)}…` : row.label)}</text>`)
  })
  const axisY = M.top + rows.length * rowH
  parts.push(`<path class="axis" d="M${left} ${axisY}H${W - M.right}" stroke="#333" fill="none"/>`)
  for (const f of [0, 0.25, 0.5, 0.75, 1]) parts.push(`<text x="${r2(x(f))}" y="${axisY + 14}" text-anchor="${f === 1 ? "end" : "middle"}">${pct(f)}</text>`)
  parts.push(legend(left, axisY + 30))
  parts.push("</svg>")
  return parts.join("")
}

const legend = (x: number, y: number): string =>
  (["interference", "zero", "synergy"] as const)
    .map((k, i) => `<rect class="legend" x="${x + i * 130}" y="${y - 9}" width="10" height="10" fill="${COLORS[k]}"/><text x="${x + i * 130 + 14}" y="${y}">${k === "zero" ? `${LAMBDA23.replace(/<\/?sub>/g, "")} = 0` : k}</text>`)
    .join("")

/** The sensitivity lines: the mean share per n, the interference min-max band over the repeats. */
const sensitivitySvg = (analysis: LeasAnalysis, label: string): string => {
  const points = analysis.sensitivity
  const height = H + 20
  const ns = points.map((p) => p.n)
  const lo = Math.min(...ns)
  const hi = Math.max(...ns)
  const x = (n: number) => (hi === lo ? (M.left + W - M.right) / 2 : M.left + ((n - lo) / (hi - lo)) * (W - M.left - M.right))
  const y = (f: number) => H - M.bottom - f * (H - M.top - M.bottom)
  const parts = [svgOpen(label, height)]
  parts.push(`<path class="axis" d="M${M.left} ${M.top}V${H - M.bottom}H${W - M.right}" fill="none" stroke="#333"/>`)
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    parts.push(`<text x="${M.left - 6}" y="${r2(y(f) + 4)}" text-anchor="end">${pct(f)}</text>`)
    if (f > 0) parts.push(`<path class="grid" d="M${M.left} ${r2(y(f))}H${W - M.right}" stroke="#e4e4e4" fill="none"/>`)
  }
  for (const n of ns) parts.push(`<text x="${r2(x(n))}" y="${H - M.bottom + 14}" text-anchor="middle">${n}</text>`)
  parts.push(`<text x="${(M.left + W - M.right) / 2}" y="${H - 8}" text-anchor="middle">samples per cell n</text>`)
  const band = points.flatMap((p) => (p.interference === null ? [] : [{ n: p.n, s: p.interference }]))
  if (band.length > 1) {
    const upper = band.map((b, i) => `${i === 0 ? "M" : "L"}${r2(x(b.n))} ${r2(y(b.s.max))}`).join("")
    const lower = [...band].reverse().map((b) => `L${r2(x(b.n))} ${r2(y(b.s.min))}`).join("")
    parts.push(`<path class="band" d="${upper}${lower}Z" fill="${COLORS.interference}" fill-opacity="0.15" stroke="none"/>`)
  }
  for (const kind of ["interference", "zero", "synergy"] as const) {
    const line = points.flatMap((p) => {
      const s: Spread | null = p[kind]
      return s === null ? [] : [{ n: p.n, v: s.mean }]
    })
    if (line.length === 0) continue
    parts.push(`<path class="line" d="${line.map((p, i) => `${i === 0 ? "M" : "L"}${r2(x(p.n))} ${r2(y(p.v))}`).join("")}" stroke="${COLORS[kind]}" stroke-width="2" fill="none"/>`)
    for (const p of line) parts.push(`<circle cx="${r2(x(p.n))}" cy="${r2(y(p.v))}" r="3.5" fill="${COLORS[kind]}"><title>n = ${p.n}: ${kind} ${pct(p.v)}</title></circle>`)
  }
  parts.push(legend(M.left, height - 4))
  parts.push("</svg>")
  return parts.join("")
}

// ---------------------------------------------------------------------------
// Tables

const numberCell = (x: number, text = num(x)): string => `<td class="num" data-value="${x}">${escapeHtml(text)}</td>`

const sharesRow = (label: string, questions: number, kept: number, dropped: number, s: Shares | null): string =>
  `<tr><td>${escapeHtml(label)}</td>${numberCell(questions, String(questions))}${numberCell(kept, String(kept))}${numberCell(dropped, String(dropped))}` +
  (s === null
    ? `<td colspan="3">no kept questions</td>`
    : `${numberCell(s.interference.share, shareText(s.interference))}${numberCell(s.synergy.share, shareText(s.synergy))}${numberCell(s.zero.share, shareText(s.zero))}`) +
  "</tr>"

const questionTable = (analysis: LeasAnalysis): string => {
  const head = [
    `<th data-type="text">id</th>`,
    `<th data-type="text">data source</th>`,
    `<th data-type="text">question</th>`,
    ...VARIANTS.map((v) => `<th data-type="number">s ${escapeHtml(VARIANT_LABELS[v])}</th>`),
    ...COEFFICIENTS.map((c) => `<th data-type="number" data-key="${c}">${escapeHtml(COEFFICIENT_LABELS[c])}</th>`),
    `<th data-type="text">effect</th>`
  ]
  const rows = analysis.questions.map((q) =>
    `<tr class="${q.interaction}"><td>${escapeHtml(q.id)}</td><td>${escapeHtml(q.dataSource)}</td><td class="question">${escapeHtml(q.question ?? "")}</td>` +
    VARIANTS.map((v) => numberCell(q.s[v], `${num(q.s[v])}${q.clipped[v] ? "*" : ""}`)).join("") +
    COEFFICIENTS.map((c) => numberCell(q.lambda[c])).join("") +
    `<td>${q.interaction}</td></tr>`
  )
  return `<table class="sortable" id="question-table"><thead><tr>${head.join("")}</tr></thead><tbody>${rows.join("")}</tbody></table>`
}

const GRADIENT_LABELS: Record<GradientSet, string> = {
  within: "within a trajectory: cos(g_reasoning, g_tool)",
  acrossReasoning: "across trajectories: cos(g_reasoning, g_reasoning')",
  acrossTool: "across trajectories: cos(g_tool, g_tool')"
}

const gradientSection = (g: GradientAnalysis): string => {
  const sets = (Object.keys(GRADIENT_LABELS) as Array<GradientSet>).flatMap((k) => {
    const d = g[k]
    return d === null ? [] : [{ k, d }]
  })
  if (sets.length === 0) return `<section id="gradients"><h2>Gradient angles</h2><p>No gradient cosines were given.</p></section>`
  const row = ({ d, k }: { k: GradientSet; d: CosineDistribution }) =>
    `<tr><td>${escapeHtml(GRADIENT_LABELS[k])}</td>${numberCell(d.n, String(d.n))}${numberCell(d.mean)}${numberCell(d.median)}${numberCell(d.quantiles[0]!.value)}${numberCell(d.quantiles[4]!.value)}${numberCell(d.meanAngleDeg, `${num(d.meanAngleDeg, 1)}°`)}${numberCell(d.angleOfMeanDeg, `${num(d.angleOfMeanDeg, 1)}°`)}</tr>`
  return [
    `<section id="gradients"><h2>Gradient angles</h2>`,
    `<p>Cosines of per-role gradients on the shared parameters. A within-trajectory cosine well below the across-trajectory ones means that the reasoning and tool tokens pull the shared weights in different directions.</p>`,
    ...sets.map(({ d, k }) => `<figure><figcaption>${escapeHtml(GRADIENT_LABELS[k])}</figcaption>${histogramSvg(d.histogram, GRADIENT_LABELS[k], "cosine", 0)}</figure>`),
    `<table><thead><tr><th>set</th><th>n</th><th>mean</th><th>median</th><th>5%</th><th>95%</th><th>mean angle</th><th>angle of mean</th></tr></thead><tbody>${sets.map(row).join("")}</tbody></table>`,
    `</section>`
  ].join("\n")
}

// ---------------------------------------------------------------------------
// The page

const STYLE = `
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 24px auto; max-width: 1100px; padding: 0 16px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 6px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.question { max-width: 320px; }
table.sortable th { cursor: pointer; background: #f4f4f4; user-select: none; }
table.sortable th[aria-sort="ascending"]::after { content: " ▲"; }
table.sortable th[aria-sort="descending"]::after { content: " ▼"; }
tr.interference td:last-child { color: ${COLORS.interference}; } tr.synergy td:last-child { color: ${COLORS.synergy}; }
svg.chart { display: block; max-width: 100%; height: auto; font-size: 11px; }
figure { margin: 12px 0; } figcaption { font-weight: 600; }
.big { font-size: 18px; } dl { display: grid; grid-template-columns: max-content auto; gap: 4px 16px; } dt { font-weight: 600; } dd { margin: 0; }
.scroll { overflow-x: auto; }
`

/** Sorts a table.sortable by the clicked header: numbers by data-value, text by its content; a second click reverses. */
const SORT_SCRIPT = `
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.tabIndex = 0;
    var sort = function () {
      var numeric = th.getAttribute("data-type") === "number";
      var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col], y = b.cells[col];
        var c = numeric ? Number(x.getAttribute("data-value")) - Number(y.getAttribute("data-value")) : x.textContent.localeCompare(y.textContent);
        return dir * c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    };
    th.addEventListener("click", sort);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); } });
  });
});
`

/** The report as one HTML page (see the module comment). */
export const renderHtml = (analysis: LeasAnalysis, gradients: GradientAnalysis | undefined, meta: ReportMeta): string => {
  const { counts, settings, shares } = analysis
  const title = meta.title ?? "LEAS report"
  const metaRows = Object.entries(meta).filter(([k, v]) => k !== "title" && v !== undefined)
  const d = analysis.lambda23
  const sources = analysis.bySource.flatMap((s) => (s.shares === null ? [] : [{ label: s.dataSource, shares: s.shares }]))
  const body = [
    `<h1>${escapeHtml(title)}</h1>`,
    metaRows.length === 0 ? "" : `<dl id="meta">${metaRows.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(metaValue(v))}</dd>`).join("")}</dl>`,
    `<section id="summary"><h2>Interference</h2>`,
    `<p class="big">Interference (${LAMBDA23} &lt; 0): <strong>${pct(shares.interference.share)}</strong> of ${shares.questions} questions, ${Math.round(settings.ciLevel * 100)}% CI [${pct(shares.interference.ci[0])}, ${pct(shares.interference.ci[1])}]</p>`,
    `<p>Synergy (${LAMBDA23} &gt; 0): ${shareText(shares.synergy)}; ${LAMBDA23} = 0: ${shareText(shares.zero)}. ` +
    `${counts.kept} of ${counts.questions} questions kept, ${counts.dropped} dropped (no variant ever correct). ` +
    `${LAMBDA23} = z<sub>Unified</sub> − z<sub>Tool</sub> − z<sub>Reas</sub> + z<sub>Base</sub>, z = logit(s).</p></section>`,
    `<section id="lambda23"><h2>Distribution of ${LAMBDA23}</h2>`,
    histogramSvg(d.histogram, "histogram of lambda_23", "λ23 (dashed: 0)", 0),
    `<table><thead><tr><th>mean</th><th>min</th>${d.quantiles.map((q) => `<th>${Math.round(q.p * 100)}%</th>`).join("")}<th>max</th></tr></thead>`,
    `<tbody><tr>${numberCell(d.mean)}${numberCell(d.min)}${d.quantiles.map((q) => numberCell(q.value)).join("")}${numberCell(d.max)}</tr></tbody></table>`,
    `<p>Mean (median) of each coefficient: ${COEFFICIENTS.map((c) => `${COEFFICIENT_LABELS[c]} ${num(analysis.coefficients[c].mean)} (${num(analysis.coefficients[c].median)})`).join(", ")}.</p></section>`,
    `<section id="by-source"><h2>By data source</h2>`,
    sharesSvg([{ label: "all", shares }, ...sources], "shares by data source"),
    `<table><thead><tr><th>data source</th><th>questions</th><th>kept</th><th>dropped</th><th>interference [CI]</th><th>synergy [CI]</th><th>λ23 = 0 [CI]</th></tr></thead><tbody>`,
    sharesRow("all", counts.questions, counts.kept, counts.dropped, shares),
    ...analysis.bySource.map((s) => sharesRow(s.dataSource, s.questions, s.kept, s.dropped, s.shares)),
    `</tbody></table></section>`,
    `<section id="sensitivity"><h2>Sensitivity to the number of samples N</h2>`,
    `<p>For each n, every (variant, question) cell keeps n of its ${settings.n} draws (seeded, without replacement), s is clipped to [1/(2n), 1 − 1/(2n)], questions with no correct draw left are dropped, and the shares are averaged over ${settings.sensitivityRepeats} such subsamples (one at n = N, which is the full analysis); the band is the min–max of the interference share over the subsamples.</p>`,
    sensitivitySvg(analysis, "shares against the number of samples"),
    `<table><thead><tr><th>n</th><th>subsamples</th><th>kept (mean)</th><th>interference (min–max)</th><th>synergy</th><th>λ23 = 0</th></tr></thead><tbody>`,
    ...analysis.sensitivity.map((p) =>
      `<tr>${numberCell(p.n, String(p.n))}${numberCell(p.repeats, String(p.repeats))}${numberCell(p.kept, num(p.kept, 1))}` +
      (["interference", "synergy", "zero"] as const).map((k) => {
        const s = p[k]
        return s === null ? `<td>–</td>` : numberCell(s.mean, k === "interference" ? `${pct(s.mean)} (${pct(s.min)}–${pct(s.max)})` : pct(s.mean))
      }).join("") + "</tr>"
    ),
    `</tbody></table></section>`,
    gradients === undefined ? "" : gradientSection(gradients),
    `<section id="questions"><h2>Questions</h2><p>Click a header to sort. s = mean EM of the ${settings.n} samples (* = clipped before the logit); λ = X<sup>−1</sup> logit(s).</p>`,
    `<div class="scroll">${questionTable(analysis)}</div></section>`,
    `<section id="settings"><h2>Settings</h2><dl>`,
    `<dt>N</dt><dd>${settings.n} samples per (variant, question)</dd>`,
    `<dt>clipping</dt><dd>s clipped to [1/(2N), 1 − 1/(2N)] = [${settings.clip.low}, ${settings.clip.high}] before the logit, so that s = 0 and s = 1 give finite logits</dd>`,
    `<dt>dropped</dt><dd>${counts.dropped} of ${counts.questions} questions (no variant ever correct)${counts.dropped === 0 ? "" : `: ${counts.droppedIds.map(escapeHtml).join(", ")}`}</dd>`,
    `<dt>bootstrap</dt><dd>${settings.bootstrap} resamples of the questions with replacement; percentile ${Math.round(settings.ciLevel * 100)}% CI</dd>`,
    `<dt>seed</dt><dd>${settings.seed}</dd>`,
    `<dt>sensitivity</dt><dd>n ∈ {${settings.sensitivity.join(", ")}}, ${settings.sensitivityRepeats} subsamples each</dd>`,
    `<dt>design</dt><dd>x = [x1, x2, x3, x12, x13, x23]: ${VARIANTS.map((v) => escapeHtml(VARIANT_LABELS[v])).join(", ")}; λ = X<sup>−1</sup> z</dd>`,
    `</dl></section>`
  ]
  return [
    "<!doctype html>",
    `<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">`,
    `<title>${escapeHtml(title)}</title><style>${STYLE}</style></head><body>`,
    ...body.filter((s) => s !== ""),
    `<script>${SORT_SCRIPT}</script>`,
    "</body></html>",
    ""
  ].join("\n")
}
