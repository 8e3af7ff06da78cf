/**
 * The agent format's text rules, as Search-R1 writes them: the default
 * instruction, how a turn's action is read, and the observations the
 * environment answers with. Pure: no addon, no Effect services.
 *
 * A turn ends when the model closes `</search>`, closes `</answer>`, writes
 * an end-of-sequence token or reaches the per-turn budget. Its action is the
 * first complete `<search> q </search>` or `<answer> a </answer>` in the
 * turn's text (Search-R1's `<(search|answer)>(.*?)</\1>`); anything else,
 * an empty query included, is invalid and answered with Search-R1's
 * invalid-action message, after which the episode goes on.
 */

/** Search-R1's instruction (scripts/data_process/nq_search.py, `make_prefix`); `{question}` is replaced. */
export const SEARCH_R1_TEMPLATE =
  "Answer the given question. You must conduct reasoning inside <think> and </think> first every time you get new information. " +
  "After reasoning, if you find you lack some knowledge, you can call a search engine by <search> query </search> and it will return " +
  "the top searched results between <information> and </information>. You can search as many times as your want. " +
  "If you find no further external knowledge needed, you can directly provide the answer inside <answer> and </answer>, " +
  "without detailed illustrations. For example, <answer> Beijing </answer>. Question: {question}\n"

/** Search-R1's observation after an invalid action (llm_agent/generation.py). */
export const INVALID_ACTION_MESSAGE =
  "\nMy previous action is invalid. If I want to search, I should put the query between <search> and </search>. " +
  "If I want to give the final answer, I should put the answer between <answer> and </answer>. Let me try again.\n"

/** The prompt text: the template with `{question}` replaced; a question gets a trailing "?" if it has none (Search-R1). */
export const promptText = (template: string, question: string): string => {
  if (!template.includes("{question}")) throw new RangeError(`the prompt template has no {question} placeholder: ${JSON.stringify(template.slice(0, 80))}`)
  const q = question.trim()
  return template.replaceAll("{question}", q.endsWith("?") ? q : `${q}?`)
}

export type Action =
  | { readonly _tag: "Search"; readonly query: string }
  | { readonly _tag: "Answer"; readonly answer: string }
  | { readonly _tag: "Invalid"; readonly reason: string }

const ACTION = /<(search|answer)>([\s\S]*?)<\/\1>/

/** The action of one turn's text (see the module comment). */
export const parseAction = (turn: string): Action => {
  const m = ACTION.exec(turn)
  if (m === null) {
    if (turn.includes("<search>")) return { _tag: "Invalid", reason: "unclosed <search>" }
    if (turn.includes("<answer>")) return { _tag: "Invalid", reason: "unclosed <answer>" }
    return { _tag: "Invalid", reason: "no <search> or <answer>" }
  }
  const content = m[2]!.trim()
  if (m[1] === "answer") return { _tag: "Answer", answer: content }
  return content === "" ? { _tag: "Invalid", reason: "empty query" } : { _tag: "Search", query: content }
}

/** The text around retrieved passages (Search-R1's `\n\n<information>...</information>\n\n`). */
export const OBSERVATION_OPEN = "\n\n<information>"
export const OBSERVATION_CLOSE = "</information>\n\n"

/** The passages' text when a search failed (the episode goes on; the failure is counted). */
export const searchFailedText = (detail: string): string => `search failed: ${detail}`

/** The passages' text when the model searches after its budget of searches is spent. */
export const searchLimitText = (maxSearches: number): string =>
  `the search limit (${maxSearches} searches) is reached; answer with what you know.`
