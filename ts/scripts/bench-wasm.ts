/**
 * The WASM build against the native addon, in the same run; writes
 * bench/results/wasm.json (`pnpm bench` runs it from scripts/bench/run.sh;
 * alone: `pnpm exec tsx ts/scripts/bench-wasm.ts [--out FILE] [--reps 5]`).
 *
 * On the built-in world's model (world/model), both builds on one thread
 * (the WASM build has only one; the native figure is also given on all
 * cores, which is what a user of the addon gets):
 * - training: forward + backward of a batch of 8 sequences x 128 tokens
 *   through two routed adapters (DART routes), tokens/s;
 * - decoding: a DART generation session, 16 sequences, 64 new tokens each
 *   (greedy, no stop), decoded tokens/s;
 * and the size of the .wasm file (raw and gzip). Each figure is the median
 * of `reps` timed repetitions after one warm-up; the ratios are WASM / native.
 */
import { readFileSync, statSync, writeFileSync, mkdirSync } from "node:fs"
import { availableParallelism } from "node:os"
import { dirname, join, resolve } from "node:path"
import { parseArgs } from "node:util"
import { gzipSync } from "node:zlib"
import { LORA_TARGETS, loadEngine, type NativeEngine } from "../src/engine/native.ts"
import { wasmPackageDir } from "../src/engine/wasm.ts"
import { benchHeader, loadavg } from "./bench-machine.ts"

const ROOT = resolve(import.meta.dirname, "../..")
const { values: args } = parseArgs({
  options: {
    out: { type: "string", default: join(ROOT, "bench/results/wasm.json") },
    reps: { type: "string", default: "5" }
  }
})
const reps = Number(args.reps)
if (!Number.isInteger(reps) || reps < 1) throw new Error(`--reps: expected a positive integer, got ${args.reps}`)

const MODEL = join(ROOT, "world/model")
const vocab = (JSON.parse(readFileSync(join(MODEL, "config.json"), "utf8")) as { vocab_size: number }).vocab_size
const SEQS = 8
const SEQ_LEN = 128
const DECODE_SEQS = 16
const DECODE_TOKENS = 64

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
const round = (x: number, digits = 3) => Number(x.toPrecision(digits + 1))

const withAdapters = (e: NativeEngine) => {
  e.addAdapter({ rank: 8, alpha: 16, targets: [...LORA_TARGETS], seed: 1, bInitStd: 0.02 })
  e.addAdapter({ rank: 8, alpha: 16, targets: [...LORA_TARGETS], seed: 2, bInitStd: 0.02 })
  return e
}

/** Median seconds of `reps` runs of `f` after one warm-up. */
const time = async (f: () => Promise<unknown>): Promise<number> => {
  await f()
  const s: Array<number> = []
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now()
    await f()
    s.push((performance.now() - t0) / 1000)
  }
  return median(s)
}

const measure = async (build: "native" | "wasm", threads: number) => {
  const e = withAdapters(await loadEngine(build).module.Engine.load(MODEL, { threads }))
  const n = SEQS * SEQ_LEN
  const tokens = Int32Array.from({ length: n }, (_, t) => (t * 131 + 7) % vocab)
  const seqLens = new Int32Array(SEQS).fill(SEQ_LEN)
  // DART: reasoning tokens on slot 0, every fourth (a tool-call token) on slot 1.
  const routes = Int32Array.from({ length: n }, (_, t) => (t % 4 === 3 ? 1 : 0))
  const dL = new Float32Array(n).fill(-1 / n)
  const trainS = await time(async () => {
    await e.forward(tokens, seqLens, routes)
    await e.backward(dL)
    e.zeroGrad()
  })
  const decodeS = await time(async () => {
    const s = e.session({ plan: { agents: [[0, 0, 1, 0]], writerR: 0, writerA: 0 }, rules: { open: [vocab + 1], close: [vocab + 2] }, seed: 1 })
    for (let i = 0; i < DECODE_SEQS; i++) s.addSequence(Int32Array.from({ length: 16 }, (_, t) => (t * 17 + i) % vocab))
    const out = await s.generate({ maxNewTokens: DECODE_TOKENS, temperature: 0 })
    const made = out.reduce((a, g) => a + g.tokens.length, 0)
    if (made !== DECODE_SEQS * DECODE_TOKENS) throw new Error(`${build}: decoded ${made} tokens, expected ${DECODE_SEQS * DECODE_TOKENS}`)
  })
  return {
    build,
    threads,
    backend: e.backendInfo().adapter,
    train_fwd_bwd_s: round(trainS),
    train_tokens_per_s: round(n / trainS),
    decode_s: round(decodeS),
    decode_tokens_per_s: round((DECODE_SEQS * DECODE_TOKENS) / decodeS)
  }
}

const nproc = availableParallelism()
const loadBefore = loadavg()
console.error(`== WASM vs native on world/model (${reps} timed repetitions each)`)
const wasm = await measure("wasm", 1)
const native1 = await measure("native", 1)
const nativeAll = await measure("native", nproc)
for (const r of [wasm, native1, nativeAll]) console.error(`${r.build} (${r.threads} threads): fwd+bwd ${r.train_tokens_per_s} tok/s, decode ${r.decode_tokens_per_s} tok/s`)
const wasmFile = join(wasmPackageDir, "dart_wasm_bg.wasm")
const bytes = readFileSync(wasmFile)
const result = {
  ...benchHeader("dart-rl engine: WASM build vs native cpu (same run)", loadBefore),
  settings: {
    model: "world/model",
    train_batch: `${SEQS} sequences x ${SEQ_LEN} tokens, two rank-8 adapters on all 7 projections, DART routes`,
    decode: `${DECODE_SEQS} sequences, 16-token prompts, ${DECODE_TOKENS} new tokens each, greedy`,
    reps,
    wasm_features: "simd128, one thread"
  },
  wasm_file: { path: "crates/dart-wasm/pkg/dart_wasm_bg.wasm", bytes: statSync(wasmFile).size, gzip_bytes: gzipSync(bytes).length },
  results: [wasm, native1, nativeAll],
  ratios: {
    train_wasm_vs_native_1_thread: round(wasm.train_tokens_per_s / native1.train_tokens_per_s),
    decode_wasm_vs_native_1_thread: round(wasm.decode_tokens_per_s / native1.decode_tokens_per_s),
    train_wasm_vs_native_all_threads: round(wasm.train_tokens_per_s / nativeAll.train_tokens_per_s),
    decode_wasm_vs_native_all_threads: round(wasm.decode_tokens_per_s / nativeAll.decode_tokens_per_s)
  }
}
mkdirSync(dirname(args.out), { recursive: true })
writeFileSync(args.out, JSON.stringify(result, null, 2) + "\n")
console.error(`wrote ${args.out}: ratios ${JSON.stringify(result.ratios)}, .wasm ${result.wasm_file.bytes} bytes (${result.wasm_file.gzip_bytes} gzip)`)
