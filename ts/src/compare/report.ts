/**
 * The comparison's table (Markdown, for the README) and its report: one
 * self-contained HTML file (no scripts, no network) with the table and the
 * learning curves as inline SVG.
 *
 * The curve chart is hand-written SVG on purpose: a few polylines and
 * bands; a chart library would have to be inlined into the file to open
 * offline, for no gain at this size.
 */
import { escapeHtml } from "../domain/html.ts"
import type { CompareResult, ModeRow } from "./Compare.ts"
import type { MeanInterval } from "./stats.ts"

const fmt = (m: MeanInterval, digits = 3) => `${m.mean.toFixed(digits)} ± ${m.halfWidth.toFixed(digits)}`

const sourcesOf = (result: CompareResult): Array<string> =>
  [...new Set(result.modes.flatMap((m) => Object.keys(m.byDataSource)))].sort()

export const renderCompareMarkdown = (result: CompareResult): string => {
  const sources = sourcesOf(result)
  const s = result.settings
  const head = ["mode", "adapters", `test EM (${s.seeds.length} seeds)`, ...sources.map((x) => `${x} EM`), "searches/question", "training s/run"]
  const rows: Array<Array<string>> = [
    ["base (untrained)", "-", result.base.em.toFixed(3), ...sources.map((x) => result.base.byDataSource[x]?.em.toFixed(3) ?? "-"), result.base.searchesPerQuestion.toFixed(2), "-"],
    ...result.modes.map((m: ModeRow) => [
      m.mode,
      m.adapters,
      fmt(m.em),
      ...sources.map((x) => (m.byDataSource[x] === undefined ? "-" : fmt(m.byDataSource[x]!))),
      fmt(m.searchesPerQuestion, 2),
      m.seconds.mean.toFixed(0)
    ])
  ]
  return [
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
    "",
    `${s.questions} test questions, ${s.steps} steps x ${s.promptsPerStep} prompts x ${s.groupSize} samples, lr ${s.lr}, seeds ${s.seeds.join(", ")}; ${s.interval}.`,
    ""
  ].join("\n")
}


const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]

/** Each mode's curve (mean line, min-max band) of training reward per step, as one SVG. */
const curveSvg = (modes: ReadonlyArray<ModeRow>, smoothing: number): string => {
  const W = 720, H = 360, L = 56, R = 150, T = 20, B = 44
  const steps = Math.max(1, ...modes.map((m) => m.rewardCurve.length))
  const top = Math.max(0.05, ...modes.flatMap((m) => m.rewardCurve.map((p) => p.max)))
  const yMax = Math.ceil(top * 10) / 10
  const x = (step: number) => L + (steps <= 1 ? 0 : (step / (steps - 1)) * (W - L - R))
  const y = (v: number) => T + (1 - v / yMax) * (H - T - B)
  const parts: Array<string> = []
  for (let i = 0; i <= 5; i++) {
    const v = (yMax * i) / 5
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`, `<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(2)}</text>`)
  }
  for (let i = 0; i <= 4; i++) {
    const s = Math.round(((steps - 1) * i) / 4)
    parts.push(`<text x="${x(s)}" y="${H - B + 18}" text-anchor="middle">${s + 1}</text>`)
  }
  parts.push(
    `<text x="${(L + W - R) / 2}" y="${H - 6}" text-anchor="middle">step</text>`,
    `<text x="14" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 14 ${(T + H - B) / 2})">training reward (moving average of ${smoothing})</text>`
  )
  modes.forEach((m, i) => {
    const c = COLORS[i % COLORS.length]!
    const pts = m.rewardCurve
    if (pts.length === 0) return
    const band = [...pts.map((p) => `${x(p.step).toFixed(1)},${y(p.max).toFixed(1)}`), ...[...pts].reverse().map((p) => `${x(p.step).toFixed(1)},${y(p.min).toFixed(1)}`)]
    parts.push(
      `<polygon class="band" points="${band.join(" ")}" fill="${c}" fill-opacity="0.15" stroke="none"/>`,
      `<polyline class="curve" points="${pts.map((p) => `${x(p.step).toFixed(1)},${y(p.mean).toFixed(1)}`).join(" ")}" fill="none" stroke="${c}" stroke-width="2"/>`,
      `<rect x="${W - R + 12}" y="${T + 6 + i * 20}" width="14" height="4" fill="${c}"/>`,
      `<text x="${W - R + 32}" y="${T + 12 + i * 20}">${escapeHtml(m.mode)}</text>`
    )
  })
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">${parts.join("")}</svg>`
}

export const renderCompareHtml = (result: CompareResult): string => {
  const s = result.settings
  const sources = sourcesOf(result)
  const cell = (m: MeanInterval) => `<td>${m.mean.toFixed(3)} <small>[${m.low.toFixed(3)}, ${m.high.toFixed(3)}]</small></td>`
  const rows = [
    `<tr><td>base (untrained)</td><td>-</td><td>${result.base.em.toFixed(3)}</td>${sources.map((x) => `<td>${result.base.byDataSource[x]?.em.toFixed(3) ?? "-"}</td>`).join("")}<td>${result.base.searchesPerQuestion.toFixed(2)}</td><td>-</td></tr>`,
    ...result.modes.map((m) =>
      `<tr><td>${escapeHtml(m.mode)}</td><td>${escapeHtml(m.adapters)}</td>${cell(m.em)}${sources.map((x) => (m.byDataSource[x] === undefined ? "<td>-</td>" : cell(m.byDataSource[x]!))).join("")}<td>${m.searchesPerQuestion.mean.toFixed(2)}</td><td>${m.seconds.mean.toFixed(0)}</td></tr>`
    )
  ]
  const runs = result.runs.map((r) =>
    `<tr><td>${escapeHtml(r.mode)}</td><td>${r.seed}</td><td>${r.test.em.toFixed(3)}</td>${sources.map((x) => `<td>${r.test.byDataSource[x]?.em.toFixed(3) ?? "-"}</td>`).join("")}<td>${r.test.searchesPerQuestion.toFixed(2)}</td><td>${r.seconds.toFixed(0)}</td></tr>`
  )
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dart-rl: mode comparison</title>
<style>body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}small{color:#666}</style>
</head><body>
<h1>Mode comparison</h1>
<p>${s.modes.map(escapeHtml).join(", ")} trained with seeds ${s.seeds.join(", ")} under the same budget (${s.steps} steps x ${s.promptsPerStep} prompts x ${s.groupSize} samples, lr ${s.lr}), evaluated greedily on ${s.questions} test questions (${escapeHtml(s.test)}). Cells: ${escapeHtml(s.interval)}; brackets: the interval.</p>
<table><thead><tr><th>mode</th><th>adapters</th><th>test EM</th>${sources.map((x) => `<th>${escapeHtml(x)}</th>`).join("")}<th>searches/question</th><th>training s/run</th></tr></thead><tbody>
${rows.join("\n")}
</tbody></table>
<h2>Learning curves</h2>
<p>Mean training reward of each step's rollouts (trailing moving average over ${s.smoothing} steps): the line is the mean over seeds, the band their range.</p>
${curveSvg(result.modes, s.smoothing)}
<h2>Runs</h2>
<table><thead><tr><th>mode</th><th>seed</th><th>test EM</th>${sources.map((x) => `<th>${escapeHtml(x)}</th>`).join("")}<th>searches/question</th><th>training s</th></tr></thead><tbody>
${runs.join("\n")}
</tbody></table>
</body></html>
`
}
