/**
 * A static file server on loopback for the WASM page (and its browser test):
 *
 *   pnpm exec tsx ts/scripts/serve-static.ts [dir] [--port 8080]
 *
 * Serves `dir` (default dist/wasm-demo) at http://127.0.0.1:PORT/, with the
 * MIME types a browser needs to compile WebAssembly and load ES modules.
 * Only files under `dir`; nothing is fetched from anywhere else.
 */
import { createReadStream, existsSync, statSync } from "node:fs"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { extname, join, normalize, resolve, sep } from "node:path"
import { parseArgs } from "node:util"

const MIME: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".json": "application/json",
  ".wasm": "application/wasm",
  ".safetensors": "application/octet-stream",
  ".css": "text/css"
}

export interface StaticServer {
  readonly url: string
  readonly close: () => Promise<void>
}

/** Serves `dir` on 127.0.0.1 (`port` 0 = any free port). */
export const serveStatic = (dir: string, port = 0): Promise<StaticServer> => {
  const root = resolve(dir)
  if (!existsSync(join(root, "index.html"))) return Promise.reject(new Error(`${root}/index.html is missing: build the page first (pnpm wasm:page)`))
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://localhost").pathname)
    const file = normalize(join(root, path.endsWith("/") ? `${path}index.html` : path))
    if (!(file === root || file.startsWith(root + sep)) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, { "content-type": "text/plain" }).end(`not found: ${path}`)
      return
    }
    res.writeHead(200, { "content-type": MIME[extname(file)] ?? "application/octet-stream", "content-length": statSync(file).size })
    createReadStream(file).pipe(res)
  })
  return new Promise((ok, fail) => {
    server.once("error", fail)
    server.listen(port, "127.0.0.1", () => {
      const { port: p } = server.address() as AddressInfo
      ok({ url: `http://127.0.0.1:${p}/`, close: () => new Promise((done) => server.close(() => done())) })
    })
  })
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { port: { type: "string", default: "8080" } } })
  const port = Number(values.port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port: expected 0..65535, got ${values.port}`)
  const s = await serveStatic(positionals[0] ?? resolve(import.meta.dirname, "../../dist/wasm-demo"), port)
  console.log(`serving on ${s.url} (Ctrl-C stops)`)
}
