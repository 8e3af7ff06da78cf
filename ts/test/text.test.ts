/**
 * The Tokenizer service through the addon against the committed parity
 * fixture (crates/dart-text/tests/fixtures/tokenizer, made with Python
 * tokenizers + transformers): encodings, decodings, chat renderings, the
 * agent tags; typed errors; a trained tokenizer round-trips random text.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import fc from "fast-check"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { AGENT_TAGS, fromFolder, train } from "../src/text/Tokenizer.ts"

const dir = join(import.meta.dirname, "../../crates/dart-text/tests/fixtures/tokenizer")
const load = (name: string) => JSON.parse(readFileSync(join(dir, name), "utf8"))
const NUM_RUNS = Number(process.env.DART_PROPERTY_RUNS ?? 100)

describe("Tokenizer (fixture parity)", () => {
  it.effect("every fixture string encodes and decodes as Python tokenizers does", () =>
    Effect.gen(function*() {
      const tok = yield* fromFolder(dir)
      const fx = load("encodings.json")
      assert.strictEqual(tok.vocabSize, fx.vocab_size)
      const texts: Array<string> = fx.entries.map((e: { text: string }) => e.text)
      const encs = yield* tok.encodeBatch(texts)
      fx.entries.forEach((e: { text: string; ids: Array<number>; offsets: Array<[number, number]>; decoded: string; decoded_skip: string }, i: number) => {
        assert.deepStrictEqual(Array.from(encs[i]!.ids), e.ids, `ids of ${JSON.stringify(e.text)}`)
        assert.deepStrictEqual(Array.from(encs[i]!.offsets), e.offsets.flat(), `offsets of ${JSON.stringify(e.text)}`)
      })
      const decoded = yield* tok.decodeBatch(encs.map((e) => e.ids))
      const skipped = yield* tok.decodeBatch(encs.map((e) => e.ids), true)
      fx.entries.forEach((e: { decoded: string; decoded_skip: string }, i: number) => {
        assert.strictEqual(decoded[i], e.decoded)
        assert.strictEqual(skipped[i], e.decoded_skip)
      })
      console.log(`${texts.length} fixture strings: ids, offsets and decodings equal Python tokenizers`)
    }))

  it.effect("chat renderings equal transformers' apply_chat_template", () =>
    Effect.gen(function*() {
      const tok = yield* fromFolder(dir)
      const convs = load("chat.json").conversations
      for (const c of convs) {
        const options = { addGenerationPrompt: c.add_generation_prompt, ...(c.tools === null ? {} : { tools: c.tools }) }
        assert.strictEqual(yield* tok.renderChat(c.messages, options), c.rendered, c.name)
        assert.deepStrictEqual(Array.from((yield* tok.encodeChat(c.messages, options)).ids), c.ids, c.name)
      }
    }))

  it.effect("the agent tags resolve to the fixture's added-token ids; an unstable tag is DART_TAG", () =>
    Effect.gen(function*() {
      const tok = yield* fromFolder(dir)
      const added = load("encodings.json").added_tokens
      const tags = yield* tok.resolveTags()
      assert.deepStrictEqual(tags.map((t) => t.tag), [...AGENT_TAGS])
      for (const t of tags) assert.deepStrictEqual(Array.from(t.ids), [added[t.tag]], t.tag)
      const bad = yield* Effect.flip(tok.resolveTags(["<tool>"]))
      assert.strictEqual(bad._tag, "TextError")
      assert.strictEqual(bad.code, "DART_TAG")
      assert.include(bad.message, "<tool>")
    }))

  it.effect("bad inputs are typed errors naming what is wrong", () =>
    Effect.gen(function*() {
      const missing = yield* Effect.flip(fromFolder(join(dir, "no-such-folder")))
      assert.strictEqual(missing.code, "DART_IO")
      assert.include(missing.message, "no-such-folder")
      const tmp = mkdtempSync(join(tmpdir(), "dart-text-"))
      try {
        writeFileSync(join(tmp, "tokenizer.json"), "{\"model\": 3}")
        const broken = yield* Effect.flip(fromFolder(tmp))
        assert.strictEqual(broken.code, "DART_TOKENIZER")
      } finally {
        rmSync(tmp, { recursive: true, force: true })
      }
      const tok = yield* fromFolder(dir)
      const neg = yield* Effect.flip(tok.decode(Int32Array.from([1, -2])))
      assert.strictEqual(neg.code, "DART_INVALID_ARGUMENT")
      assert.include(neg.message, "ids[1] = -2")
      const role = yield* Effect.flip(tok.renderChat([{ content: "no role" } as never], { addGenerationPrompt: true }))
      assert.strictEqual(role.code, "DART_INVALID_ARGUMENT")
    }))
})

describe("Tokenizer training", () => {
  it.effect("a tokenizer trained on text keeps the tags whole and round-trips random strings", () =>
    Effect.gen(function*() {
      const texts: Array<string> = load("encodings.json").entries.map((e: { text: string }) => e.text.normalize("NFC"))
      const tok = yield* train(texts, { vocabSize: 600 })
      const again = yield* train(texts, { vocabSize: 600 })
      assert.strictEqual(tok.native.toJson(), again.native.toJson(), "deterministic")
      assert.isAtMost(tok.vocabSize, 600)
      const tags = yield* tok.resolveTags()
      assert.isTrue(tags.every((t) => t.ids.length === 1))
      const piece = fc.constantFrom("a", "Z", "0", " ", "\n", "\t", ".", "é", "中", "😀", "<search>", "</answer>", "q")
      fc.assert(
        fc.property(fc.array(piece, { maxLength: 30 }), (parts) => {
          const s = parts.join("")
          const ids = Effect.runSync(tok.encode(s)).ids
          return Effect.runSync(tok.decode(ids)) === s
        }),
        { numRuns: NUM_RUNS }
      )
      console.log(`property "trained tokenizer round-trips": ${NUM_RUNS} cases`)
    }))
})
