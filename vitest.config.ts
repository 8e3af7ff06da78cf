import { defineConfig } from "vitest/config"

// `pnpm test` runs `cargo test` first, then this: every TypeScript test project.
// Each folder may hold its own vitest.config.ts (which then applies).
export default defineConfig({
  test: {
    projects: ["ts", "property-tests"],
    // XDG_RUNTIME_DIR for Mesa lavapipe (the wgpu tests): see vitest.setup.ts.
    globalSetup: ["./vitest.setup.ts"]
  }
})
