/**
 * Builds the static WASM page (web/wasm-demo) into a folder that needs no
 * network at run time:
 *
 *   pnpm wasm:page [--out dist/wasm-demo]
 *
 * It holds the page (index.html, main.js), the WASM package
 * (crates/dart-wasm/pkg, from scripts/build-wasm.sh), the built-in world's
 * model (world/model: config, weights, tokenizer) and demo.json (the
 * pipeline's prompt template, an example test question, the EOS token).
 * Serve it with `pnpm exec tsx ts/scripts/serve-static.ts` (any static server
 * that sends .wasm as application/wasm will do).
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { parseArgs } from "node:util"
import { wasmPackageDir } from "../src/engine/wasm.ts"
import { defaultRolloutConfig } from "../src/rollout/Rollout.ts"

const ROOT = resolve(import.meta.dirname, "../..")

/** Writes the page into `out` (replaced whole); returns `out`. */
export const buildWasmPage = (out: string): string => {
  const model = join(ROOT, "world/model")
  const files: Array<[string, string]> = [
    [join(ROOT, "web/wasm-demo/index.html"), "index.html"],
    [join(ROOT, "web/wasm-demo/main.js"), "main.js"],
    [join(wasmPackageDir, "dart_wasm.js"), "pkg/dart_wasm.js"],
    [join(wasmPackageDir, "dart_wasm_bg.wasm"), "pkg/dart_wasm_bg.wasm"],
    ...["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"].map((f): [string, string] => [join(model, f), `model/${f}`])
  ]
  for (const [from] of files) {
    if (!existsSync(from)) throw new Error(`${from} is missing${from.startsWith(wasmPackageDir) ? ": run bash scripts/build-wasm.sh first" : ""}`)
  }
  rmSync(out, { recursive: true, force: true })
  mkdirSync(join(out, "pkg"), { recursive: true })
  mkdirSync(join(out, "model"), { recursive: true })
  for (const [from, to] of files) copyFileSync(from, join(out, to))
  const tokenizerConfig = JSON.parse(readFileSync(join(model, "tokenizer_config.json"), "utf8")) as { eos_token: string }
  const example = JSON.parse(readFileSync(join(ROOT, "world/test.jsonl"), "utf8").split("\n")[0]!) as { question: string }
  const demo = {
    promptTemplate: defaultRolloutConfig.promptTemplate,
    exampleQuestion: example.question,
    eosToken: tokenizerConfig.eos_token,
    adapterInitStd: 0.02
  }
  writeFileSync(join(out, "demo.json"), JSON.stringify(demo, null, 2) + "\n")
  return out
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { out: { type: "string", default: join(ROOT, "dist/wasm-demo") } } })
  console.log(`wrote ${buildWasmPage(resolve(values.out))} (serve it: pnpm exec tsx ts/scripts/serve-static.ts ${values.out})`)
}
