/**
 * The built-in world: a seeded, deterministic synthetic knowledge world
 * (docs/world.md). Invented people, cities, organisations and works with
 * typed relations; one encyclopedic passage per entity with several facts;
 * distractors with similar names (families share a surname, cities a stem);
 * questions with gold answers of three types:
 *
 * - 1-hop: the answer is in one passage ("Where was X born?");
 * - 2-hop: a bridge entity, two searches and a reasoning step ("Where is
 *   the organisation that X works for headquartered?");
 * - comparison: two lookups and a comparison ("Who was born earlier, X or Y?").
 *
 * Names are invented, so nothing can be answered without searching. The
 * test split asks only about held-out people (no train or validation
 * question mentions them); train, validation and test share no question.
 * Pure: the same seed gives the same world, byte for byte.
 */

import { prng, shuffleInPlace } from "../domain/random.ts"

export { prng }

export type QuestionType = "1-hop" | "2-hop" | "comparison"
export const QUESTION_TYPES: ReadonlyArray<QuestionType> = ["1-hop", "2-hop", "comparison"]

export interface City { readonly name: string; readonly country: string; readonly population: number }
export interface Org { readonly name: string; readonly kind: string; readonly founded: number; readonly city: string }
export interface Person {
  readonly name: string
  readonly occupation: string
  readonly born: number
  readonly city: string
  readonly org: string
  readonly heldOut: boolean
}
export interface Work { readonly title: string; readonly genre: string; readonly year: number; readonly author: string }

export interface Passage { readonly id: string; readonly title: string; readonly text: string }

export interface Question {
  readonly id: string
  readonly question: string
  readonly golden_answers: ReadonlyArray<string>
  /** The question type (the pipeline's summaries split by data_source). */
  readonly data_source: QuestionType
  /** What a good agent searches for, in order (the demonstrations use it). */
  readonly searches: ReadonlyArray<string>
  /** The entities the question is about (for the held-out rule). */
  readonly about: ReadonlyArray<string>
}

export interface World {
  readonly seed: number
  readonly cities: ReadonlyArray<City>
  readonly orgs: ReadonlyArray<Org>
  readonly people: ReadonlyArray<Person>
  readonly works: ReadonlyArray<Work>
  readonly passages: ReadonlyArray<Passage>
  readonly train: ReadonlyArray<Question>
  readonly validation: ReadonlyArray<Question>
  readonly test: ReadonlyArray<Question>
}

export interface WorldOptions {
  readonly seed: number
  readonly people: number
  readonly cities: number
  readonly orgs: number
  readonly works: number
  /** Share of people held out for the test split. */
  readonly heldOut: number
  /** Validation questions (drawn from the non-held-out questions). */
  readonly validation: number
  /** Test questions (at most; about held-out people). */
  readonly test: number
}

export const defaultWorldOptions: WorldOptions = { seed: 2026, people: 240, cities: 24, orgs: 30, works: 120, heldOut: 0.2, validation: 150, test: 150 }

const ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "th", "sh"]
const VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou"]
const CODAS = ["", "", "n", "r", "l", "s", "th", "m"]
const COUNTRIES = ["Varosia", "Eldmark", "Quorvale", "Tessaly", "Morwen", "Caldria"]
const OCCUPATIONS = ["engineer", "painter", "physician", "architect", "historian", "composer", "chemist", "sailor"]
const ORG_KINDS = ["shipyard", "bank", "library", "observatory", "foundry", "publishing house"]
const ORG_SUFFIX = ["Works", "Guild", "Company", "Institute", "Society"]
const GENRES = ["novel", "poem", "play", "treatise", "song cycle"]
const WORK_NOUNS = ["River", "Lantern", "Harbor", "Winter", "Garden", "Tower", "Mirror", "Orchard", "Bridge", "Falcon"]
const WORK_ADJ = ["Silent", "Golden", "Hollow", "Distant", "Bitter", "Quiet", "Crimson", "Broken"]

const cap = (w: string) => w[0]!.toUpperCase() + w.slice(1)

/** Generates the world (see the module comment). */
export const generateWorld = (options: WorldOptions = defaultWorldOptions): World => {
  const rand = prng(options.seed)
  const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(rand() * xs.length)]!
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1))
  const used = new Set<string>()
  const syllable = () => pick(ONSETS) + pick(VOWELS) + pick(CODAS)
  const fresh = (make: () => string): string => {
    for (;;) {
      const n = make()
      if (!used.has(n)) {
        used.add(n)
        return n
      }
    }
  }
  const word = (n: number) => cap(Array.from({ length: n }, syllable).join(""))

  // Cities in pairs sharing a stem ("Velmor", "Velmora"): distractors for the search.
  const cities: Array<City> = []
  while (cities.length < options.cities) {
    const stem = fresh(() => word(2))
    for (const name of [stem, fresh(() => stem + pick(["a", "en", "is", "ov"]))]) {
      if (cities.length < options.cities) cities.push({ name, country: pick(COUNTRIES), population: int(2, 900) * 1000 })
    }
  }
  const orgs: Array<Org> = Array.from({ length: options.orgs }, () => ({
    name: fresh(() => `${word(2)} ${pick(ORG_SUFFIX)}`),
    kind: pick(ORG_KINDS),
    founded: int(1650, 1950),
    city: pick(cities).name
  }))
  // Families of 2-3 people share a surname: similar names in the index.
  const people: Array<Person> = []
  while (people.length < options.people) {
    const surname = fresh(() => word(2))
    const size = int(2, 3)
    for (let k = 0; k < size && people.length < options.people; k++) {
      people.push({
        name: fresh(() => `${word(1)} ${surname}`),
        occupation: pick(OCCUPATIONS),
        born: int(1700, 1990),
        city: pick(cities).name,
        org: pick(orgs).name,
        heldOut: false
      })
    }
  }
  // Held out: whole families at the end of a shuffled order, so no surname is split.
  const surnames = [...new Set(people.map((p) => p.name.split(" ")[1]!))]
  shuffleInPlace(surnames, rand)
  const heldOutNames = new Set(surnames.slice(0, Math.round(surnames.length * options.heldOut)))
  const allPeople = people.map((p) => ({ ...p, heldOut: heldOutNames.has(p.name.split(" ")[1]!) }))
  const works: Array<Work> = Array.from({ length: options.works }, () => {
    const author = pick(allPeople)
    return {
      title: fresh(() => `The ${pick(WORK_ADJ)} ${pick(WORK_NOUNS)} of ${word(2)}`),
      genre: pick(GENRES),
      year: Math.min(2020, author.born + int(20, 60)),
      author: author.name
    }
  })

  const passages: Array<Passage> = []
  const id = () => `d${passages.length}`
  for (const c of cities) {
    passages.push({ id: id(), title: c.name, text: `${c.name} is a city in ${c.country}. About ${c.population} people live in ${c.name}.` })
  }
  for (const o of orgs) {
    passages.push({ id: id(), title: o.name, text: `${o.name} is a ${o.kind} founded in ${o.founded}. ${o.name} is headquartered in ${o.city}.` })
  }
  const worksBy = new Map<string, Array<Work>>()
  for (const w of works) worksBy.set(w.author, [...(worksBy.get(w.author) ?? []), w])
  for (const p of allPeople) {
    const wrote = worksBy.get(p.name) ?? []
    const extra = wrote.length > 0 ? ` ${p.name} wrote ${wrote.map((w) => w.title).join(" and ")}.` : ""
    passages.push({ id: id(), title: p.name, text: `${p.name} is a ${p.occupation} born in ${p.city} in ${p.born}. ${p.name} works for ${p.org}.${extra}` })
  }
  for (const w of works) {
    passages.push({ id: id(), title: w.title, text: `${w.title} is a ${w.genre} written by ${w.author} and published in ${w.year}.` })
  }

  // Questions.
  const orgOf = new Map(orgs.map((o) => [o.name, o]))
  const personOf = new Map(allPeople.map((p) => [p.name, p]))
  const all: Array<Omit<Question, "id">> = []
  const q = (type: QuestionType, question: string, answer: string, searches: ReadonlyArray<string>, about: ReadonlyArray<string>) =>
    all.push({ question, golden_answers: [answer], data_source: type, searches, about })
  for (const p of allPeople) {
    q("1-hop", `Where was ${p.name} born?`, p.city, [p.name], [p.name])
    q("1-hop", `Which organisation does ${p.name} work for?`, p.org, [p.name], [p.name])
    q("1-hop", `In which year was ${p.name} born?`, String(p.born), [p.name], [p.name])
    const o = orgOf.get(p.org)!
    q("2-hop", `In which city is the organisation that ${p.name} works for headquartered?`, o.city, [p.name, o.name], [p.name])
    q("2-hop", `In which year was the organisation that ${p.name} works for founded?`, String(o.founded), [p.name, o.name], [p.name])
  }
  for (const w of works) {
    const a = personOf.get(w.author)!
    q("1-hop", `Who wrote ${w.title}?`, w.author, [w.title], [w.author])
    q("2-hop", `Where was the author of ${w.title} born?`, a.city, [w.title, a.name], [w.author])
  }
  for (const o of orgs) q("1-hop", `Where is ${o.name} headquartered?`, o.city, [o.name], [])
  // Comparisons between people of the same split (different birth years).
  for (const heldOut of [false, true]) {
    const pool = allPeople.filter((p) => p.heldOut === heldOut)
    for (let k = 0; k < pool.length; k++) {
      const a = pool[k]!
      const b = pool[(k * 7 + 3) % pool.length]!
      if (a.name === b.name || a.born === b.born) continue
      const earlier = a.born < b.born ? a : b
      q("comparison", `Who was born earlier, ${a.name} or ${b.name}?`, earlier.name, [a.name, b.name], [a.name, b.name])
    }
  }
  const isHeldOut = (x: Omit<Question, "id">) => x.about.some((n) => personOf.get(n)?.heldOut === true)
  const shuffled = all.map((x) => ({ x, r: rand() })).sort((a, b) => a.r - b.r).map(({ x }) => x)
  const numbered = shuffled.map((x, i) => ({ id: `q${i}`, ...x }))
  const seen = numbered.filter((x) => !isHeldOut(x))
  const test = numbered.filter(isHeldOut).slice(0, options.test)
  const validation = seen.slice(0, options.validation)
  const train = seen.slice(options.validation)
  return { seed: options.seed, cities, orgs, people: allPeople, works, passages, train, validation, test }
}

/** A question in the Search-R1 dataset layout (what the pipeline reads). */
export const datasetRow = (x: Question) => ({ id: x.id, question: x.question, golden_answers: x.golden_answers, data_source: x.data_source })

/** A passage in the Search-R1 corpus layout. */
export const corpusRow = (p: Passage) => ({ id: p.id, contents: `"${p.title}"\n${p.text}` })
