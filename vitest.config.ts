import { defineConfig } from "vitest/config"

// `pnpm test` runs `cargo test` first, then this: every TypeScript test project.
// Each folder may hold its own vitest.config.ts (which then applies).
export default defineConfig({
  test: {
    projects: ["ts", "property-tests"]
  }
})
