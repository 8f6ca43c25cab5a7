// Builds the console into dist/console (served by the manager at /).
import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

const here = fileURLToPath(new URL(".", import.meta.url));

export default defineConfig({
  root: here,
  base: "/",
  plugins: [react()],
  logLevel: "warn",
  build: { outDir: fileURLToPath(new URL("../../../dist/console", import.meta.url)), emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 1024 },
});
