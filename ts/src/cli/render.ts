/**
 * A trajectory as text for a terminal: consecutive tokens of one role
 * decoded together, each role in its colour (P dim, R plain, A cyan, O
 * yellow) when colour is on, else marked with `[P]`-style role tags at each
 * change. Pure.
 */
import { ROLE } from "../domain/model.ts"

export interface Span {
  readonly role: number
  readonly start: number
  readonly end: number
}

/** Runs of equal roles: [start, end) token ranges. */
export const roleSpans = (roles: ArrayLike<number>, from = 0): Array<Span> => {
  const spans: Array<Span> = []
  for (let t = from; t < roles.length; t++) {
    const last = spans[spans.length - 1]
    if (last !== undefined && last.role === roles[t]) spans[spans.length - 1] = { ...last, end: t + 1 }
    else spans.push({ role: roles[t]!, start: t, end: t + 1 })
  }
  return spans
}

const NAMES: Record<number, string> = { [ROLE.P]: "P", [ROLE.R]: "R", [ROLE.A]: "A", [ROLE.O]: "O" }
const COLORS: Record<number, [string, string]> = {
  [ROLE.P]: ["\x1b[2m", "\x1b[22m"],
  [ROLE.R]: ["", ""],
  [ROLE.A]: ["\x1b[36m", "\x1b[39m"],
  [ROLE.O]: ["\x1b[33m", "\x1b[39m"]
}

/** The spans' texts joined, coloured or tagged by role. */
export const renderSpans = (spans: ReadonlyArray<{ readonly role: number; readonly text: string }>, color: boolean): string =>
  spans.map(({ role, text }) => {
    if (!color) return `[${NAMES[role] ?? role}]${text}`
    const [on, off] = COLORS[role] ?? ["", ""]
    return `${on}${text}${off}`
  }).join("")

export const LEGEND_COLOR = `roles: ${COLORS[ROLE.P]![0]}prompt${COLORS[ROLE.P]![1]}, reasoning, ${COLORS[ROLE.A]![0]}tool call${COLORS[ROLE.A]![1]}, ${COLORS[ROLE.O]![0]}observation${COLORS[ROLE.O]![1]}`
export const LEGEND_PLAIN = "roles: [P] prompt, [R] reasoning, [A] tool call, [O] observation"
