/**
 * `pnpm pipeline <command>`: the dart-rl command line (effect/cli on Node).
 *
 * For now `train` runs the engine demo (src/demo/EngineDemo.ts) until the RL
 * pipeline lands; `index` builds the built-in BM25 index of a corpus and
 * `serve` answers the Search-R1 retrieval protocol from one. Further commands
 * (eval, leas, ask, pretrain) are added next to them as subcommands.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Effect, Option } from "effect"
import { CliError, Command, Flag } from "effect/cli"
import * as Engine from "../engine/Engine.ts"
import { runDemo } from "../demo/EngineDemo.ts"
import { buildIndex, openIndex } from "../search/bm25.ts"
import { serve as serveSearch } from "../search/server.ts"

const VERSION = "0.1.0"
const MAX_SEED = 2 ** 31 - 1

const intFlag = (name: string, min: number, max: number, description: string) =>
  Flag.Int(name).pipe(
    Flag.withDescription(`${description} (integer in [${min}, ${max}])`),
    Flag.filter(
      (n) => n >= min && n <= max,
      (n) => `--${name} must be an integer in [${min}, ${max}], got ${n}`
    )
  )

const steps = intFlag("steps", 1, 100_000, "optimizer steps").pipe(Flag.withDefault(30))
const seed = intFlag("seed", 0, MAX_SEED, "seed of the model, the adapters and the batch").pipe(Flag.withDefault(0))
const threads = intFlag("threads", 1, 1024, "CPU threads of the engine (default: all cores)").pipe(Flag.optional)
const backend = Flag.ChoiceWithValue("backend", [
  ["cpu", "cpu"],
  ["wgpu", "wgpu"],
  ["auto", "auto"]
] as const).pipe(
  Flag.withDescription("engine backend: cpu (reference), wgpu (WGSL compute), auto (a real GPU, else cpu)"),
  Flag.withDefault("cpu" as const)
)
const lr = Flag.Finite("lr").pipe(
  Flag.withDescription("AdamW learning rate (number in (0, 1])"),
  Flag.filter(
    (x) => x > 0 && x <= 1,
    (x) => `--lr must be a number in (0, 1], got ${x}`
  ),
  Flag.withDefault(1e-2)
)

const toUserError = (error: { readonly _tag: string; readonly message: string; readonly code?: string }) =>
  new CliError.UserError({
    cause: error,
    userMessage: `${error._tag}${error.code ? ` [${error.code}]` : ""}: ${error.message}`
  })

const train = Command.make(
  "train",
  { steps, lr, seed, threads, backend },
  (flags) =>
    runDemo({ steps: flags.steps, lr: flags.lr, seed: flags.seed, vocabSize: Engine.tinyQwen2Config.vocab_size }).pipe(
      Effect.provide(
        Engine.layerRandom(
          Engine.tinyQwen2Config,
          flags.seed,
          Option.match(flags.threads, {
            onNone: () => ({ backend: flags.backend }),
            onSome: (threads) => ({ threads, backend: flags.backend })
          })
        )
      ),
      Effect.mapError(toUserError),
      Effect.asVoid
    )
).pipe(
  Command.withDescription(
    "Train (for now: a short engine demo on a tiny random Qwen2-shaped model with two routed LoRA adapters)"
  )
)

const bm25Flag = (name: "k1" | "b", fallback: number, max: number, description: string) =>
  Flag.Finite(name).pipe(
    Flag.withDescription(`${description} (number in [0, ${max}]; default ${fallback}, pyserini's)`),
    Flag.filter(
      (x) => x >= 0 && x <= max,
      (x) => `--${name} must be a number in [0, ${max}], got ${x}`
    ),
    Flag.withDefault(fallback)
  )

const index = Command.make(
  "index",
  {
    corpus: Flag.String("corpus").pipe(
      Flag.withDescription("the corpus: .jsonl or .jsonl.gz with one {\"id\", \"contents\"} object per line (Search-R1's layout)")
    ),
    out: Flag.String("out").pipe(Flag.withDescription("the index folder to create (must not exist)")),
    threads: intFlag("threads", 1, 8, "indexing threads (default: the cores, at most 8)").pipe(Flag.optional),
    heapMb: intFlag("heap-mb", 15, 64_000, "indexing memory of all threads together, MB (default 256 per thread)").pipe(Flag.optional),
    k1: bm25Flag("k1", 0.9, 10, "BM25 k1, term-frequency saturation"),
    b: bm25Flag("b", 0.4, 1, "BM25 b, length normalisation")
  },
  (flags) =>
    buildIndex(flags.corpus, flags.out, {
      k1: flags.k1,
      b: flags.b,
      progress: true,
      ...Option.match(flags.threads, { onNone: () => ({}), onSome: (threads) => ({ threads }) }),
      ...Option.match(flags.heapMb, { onNone: () => ({}), onSome: (heapMb) => ({ heapMb }) })
    }).pipe(
      Effect.flatMap((r) =>
        Effect.log(`index ${flags.out}: ${r.passages} passages in ${r.seconds.toFixed(1)} s, ${(r.bytes / 1e6).toFixed(1)} MB`)
      ),
      Effect.mapError((e) => toUserError({ _tag: e._tag, message: e.message }))
    )
).pipe(Command.withDescription("Build the built-in BM25 index (tantivy) of a Search-R1 corpus"))

const serve = Command.make(
  "serve",
  {
    index: Flag.String("index").pipe(Flag.withDescription("an index folder made by `pipeline index`")),
    host: Flag.String("host").pipe(
      Flag.withDescription("address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for every interface)"),
      Flag.withDefault("127.0.0.1")
    ),
    port: intFlag("port", 0, 65_535, "port to listen on (0: any free port)").pipe(Flag.withDefault(8000)),
    topk: intFlag("topk", 1, 1000, "topk of a request that gives none").pipe(Flag.withDefault(3))
  },
  (flags) =>
    Effect.scoped(
      Effect.gen(function*() {
        const search = yield* openIndex(flags.index)
        const address = yield* serveSearch({ host: flags.host, port: flags.port, search, defaultTopk: flags.topk })
        yield* Effect.log(`serving ${flags.index} (${search.passages} passages) at ${address.url} (POST {"queries", "topk", "return_scores"}); Ctrl-C stops`)
        return yield* Effect.never
      })
    ).pipe(Effect.mapError((e) => toUserError({ _tag: e._tag, message: e.message })))
).pipe(Command.withDescription("Serve an index with the Search-R1 retrieval protocol (POST /retrieve)"))

const pipeline = Command.make("pipeline").pipe(
  Command.withDescription("dart-rl: DART/LEAS agentic-RL training pipeline"),
  Command.withSubcommands([train, index, serve])
)

Command.run(pipeline, { version: VERSION }).pipe(
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain
)
