/**
 * Demonstration trajectories for the cold start, in the agent format, of
 * deliberately uneven quality (docs/world.md): most 1-hop demonstrations
 * search and answer from the passage; most 2-hop ones stop after the first
 * hop and guess, most comparisons look up one side and guess, and some of
 * every type answer before searching. So the cold-started model follows the
 * format, answers many 1-hop questions and leaves most 2-hop and comparison
 * questions wrong, while the good behaviour is in its distribution for RL
 * to find. Pure: the observations come from the caller's search.
 */
import { OBSERVATION_CLOSE, OBSERVATION_OPEN } from "../rollout/agent.ts"
import { prng, type Question, type World } from "./world.ts"

/** Who writes a segment: the model (trained on) or the environment (the observation). */
export type Writer = "model" | "tool"
export type Demonstration = ReadonlyArray<readonly [text: string, writer: Writer]>

export interface DemoMix {
  /** Share of demonstrations of each type that do the whole search plan. */
  readonly good: Readonly<Record<Question["data_source"], number>>
  /** Share that answer (a guess) before any search. */
  readonly guessFirst: number
}

export const defaultDemoMix: DemoMix = { good: { "1-hop": 0.85, "2-hop": 0.3, comparison: 0.3 }, guessFirst: 0.1 }

/** The demonstrations of `questions`; `observe(query)` is the observation text (the passages) of a search. */
export const demonstrations = (
  world: World,
  questions: ReadonlyArray<Question>,
  observe: (query: string) => string,
  eos: string,
  mix: DemoMix = defaultDemoMix,
  seed = 1
): Array<{ readonly question: Question; readonly turns: Demonstration }> => {
  const rand = prng(seed)
  const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(rand() * xs.length)]!
  const person = new Map(world.people.map((p) => [p.name, p]))
  // A wrong answer of the right kind (a city for a city, a year for a year, a name for a name).
  const guess = (q: Question): string => {
    const gold = q.golden_answers[0]!
    if (/^\d+$/.test(gold)) return String(Number(gold) + pick([-7, -3, 2, 5, 11]))
    if (world.cities.some((c) => c.name === gold)) return pick(world.cities).name
    if (world.orgs.some((o) => o.name === gold)) return pick(world.orgs).name
    // A comparison guessed: the other name (a coin flip would be right half the time).
    if (q.data_source === "comparison") return q.searches.find((n) => n !== gold) ?? pick(world.people).name
    return pick(world.people).name
  }
  const answer = (a: string): [string, Writer] => [`<think> The answer is ${a}. </think>\n<answer> ${a} </answer>${eos}`, "model"]
  const search = (why: string, query: string): Array<[string, Writer]> => [
    [`<think> ${why} </think>\n<search> ${query} </search>`, "model"],
    [`${OBSERVATION_OPEN}${observe(query)}${OBSERVATION_CLOSE}`, "tool"]
  ]
  return questions.map((q) => {
    const gold = q.golden_answers[0]!
    const [first, second] = q.searches as [string, string | undefined]
    if (rand() < mix.guessFirst) return { question: q, turns: [[`<think> I think I know this. </think>\n<answer> ${guess(q)} </answer>${eos}`, "model"]] }
    const good = rand() < mix.good[q.data_source]
    const turns: Array<[string, Writer]> = [...search(`I need to find ${first}.`, first)]
    if (second === undefined) return { question: q, turns: [...turns, answer(good ? gold : guess(q))] }
    if (!good) return { question: q, turns: [...turns, answer(guess(q))] }
    if (q.data_source === "comparison") {
      const a = person.get(first)!
      const b = person.get(second)!
      turns.push(...search(`${first} was born in ${a.born}. I need to find ${second}.`, second))
      turns.push([`<think> ${second} was born in ${b.born}, so ${gold} was born earlier. </think>\n<answer> ${gold} </answer>${eos}`, "model"])
      return { question: q, turns }
    }
    turns.push(...search(`The passage names ${second}. I need to find ${second}.`, second))
    return { question: q, turns: [...turns, answer(gold)] }
  })
}
