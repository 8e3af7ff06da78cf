// The page's logic: loads the WASM engine and the built-in world's model,
// generates with DART routing, colours each token by its adapter. Also
// exposes window.dartDemo (ready, generate, forward, promptIds) for the
// headless browser test (ts/test/wasm-browser.test.ts).
import init, { ChatTemplate, Engine, Tokenizer, takePanic } from "./pkg/dart_wasm.js"

/** DART's generation plan: reasoning on slot 0, tool calls on slot 1 (roles P, R, A, O). */
const DART = { agents: [[0, 0, 1, 0]], writerR: 0, writerA: 0 }
const TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
const ROUTE_CLASS = new Map([[-1, "base"], [0, "reason"], [1, "tool"]])
const ROLE_NAME = ["prompt", "reasoning", "tool call", "observation"]

const fetchOk = async (path) => {
  const r = await fetch(path)
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`)
  return r
}

/** A WASM trap is a Rust panic: report its message. */
const explain = (e) => {
  if (e instanceof WebAssembly.RuntimeError) return `DART_PANIC: ${takePanic() ?? e.message}`
  return e.code ? `${e.code}: ${e.message}` : String(e)
}

const setup = async () => {
  await init({ module_or_path: "./pkg/dart_wasm_bg.wasm" })
  const [config, weights, tokenizerJson, tokenizerConfig, demo] = await Promise.all([
    fetchOk("./model/config.json").then((r) => r.text()),
    fetchOk("./model/model.safetensors").then((r) => r.arrayBuffer()),
    fetchOk("./model/tokenizer.json").then((r) => r.text()),
    fetchOk("./model/tokenizer_config.json").then((r) => r.text()),
    fetchOk("./demo.json").then((r) => r.json())
  ])
  const engine = Engine.fromBytes(config, new Uint8Array(weights), { threads: 1 })
  for (const seed of [1, 2]) engine.addAdapter({ rank: 8, alpha: 16, targets: TARGETS, seed, bInitStd: demo.adapterInitStd })
  const tokenizer = Tokenizer.fromJson(tokenizerJson)
  const template = ChatTemplate.fromTokenizerConfigJson(tokenizerConfig)
  const tags = new Map(tokenizer.resolveTags().map((t) => [t.tag, [...t.ids]]))
  const rules = { open: tags.get("<search>"), close: tags.get("</search>") }
  const eos = [tokenizer.tokenToId(demo.eosToken)]
  return { engine, tokenizer, template, rules, eos, demo }
}

const state = setup()

/** The prompt's token ids: the training prompt with the question, in the chat template. */
const promptIds = async (question) => {
  const { template, tokenizer, demo } = await state
  // As the pipeline does (ts/src/rollout/agent.ts promptText); the browser test checks the ids are its.
  const q = question.trim().endsWith("?") ? question.trim() : `${question.trim()}?`
  const text = template.render(JSON.stringify([{ role: "user", content: demo.promptTemplate.replaceAll("{question}", q) }]), true)
  return [...tokenizer.encode(text, false).ids]
}

const generate = async ({ question, seed = 0, temperature = 0, maxNewTokens = 96 }) => {
  const { engine, rules, eos } = await state
  const prompt = await promptIds(question)
  const session = engine.session({ plan: DART, rules, seed })
  try {
    session.addSequence(Int32Array.from(prompt))
    // No search index in the page: a tool call does not pause the sequence.
    const [g] = session.generate({ maxNewTokens, temperature, eos, pauseOnToolCall: false })
    return { prompt, tokens: [...g.tokens], roles: [...g.roles], routes: [...g.routes], logprobs: [...g.logprobs], stop: g.stop }
  } finally {
    session.free()
  }
}

const forward = async ({ tokens, seqLens, routes }) => {
  const { engine } = await state
  return [...engine.forward(Int32Array.from(tokens), Int32Array.from(seqLens), Int32Array.from(routes))]
}

const show = async (out, result) => {
  const { tokenizer } = await state
  const box = document.getElementById("out")
  box.replaceChildren()
  const prompt = document.createElement("span")
  prompt.className = "prompt"
  prompt.textContent = tokenizer.decode(Int32Array.from(result.prompt), false)
  box.append(prompt)
  result.tokens.forEach((id, i) => {
    const span = document.createElement("span")
    span.className = `tok ${ROUTE_CLASS.get(result.routes[i]) ?? "base"}`
    span.textContent = tokenizer.decode(Int32Array.of(id), false)
    span.title = `${ROLE_NAME[result.roles[i]]}, adapter ${result.routes[i]}, logprob ${result.logprobs[i].toFixed(3)}`
    span.dataset.route = String(result.routes[i])
    box.append(span)
  })
  out.textContent = `${result.tokens.length} tokens, stop: ${result.stop}`
}

window.dartDemo = { ready: state.then(() => true), generate, forward, promptIds }

const status = document.getElementById("status")
state.then(({ demo, engine }) => {
  document.getElementById("question").value = demo.exampleQuestion
  document.getElementById("go").disabled = false
  status.textContent = `ready: ${engine.backendInfo().adapter}, ${engine.numAdapters()} adapters`
}, (e) => {
  status.textContent = `failed to load: ${explain(e)}`
})

document.getElementById("form").addEventListener("submit", async (ev) => {
  ev.preventDefault()
  status.textContent = "generating ..."
  try {
    const t0 = performance.now()
    const result = await generate({
      question: document.getElementById("question").value,
      seed: Number(document.getElementById("seed").value),
      temperature: Number(document.getElementById("temperature").value),
      maxNewTokens: Number(document.getElementById("max").value)
    })
    await show(status, result)
    status.textContent += `, ${((performance.now() - t0) / 1000).toFixed(2)} s`
  } catch (e) {
    status.textContent = explain(e)
  }
})
