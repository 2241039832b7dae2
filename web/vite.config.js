// Builds the web console into dist/, which corrald serves at / (`--web-root`).
// Everything is bundled: no CDN, no external fonts. The consoles (noVNC, xterm) are split
// into their own chunks and loaded only when a console is opened.
import { defineConfig } from 'vite';

export default defineConfig({
  base: './',
  oxc: {
    jsx: { runtime: 'automatic', importSource: 'preact' },
  },
  build: {
    outDir: 'dist',
    target: 'es2022',
    chunkSizeWarningLimit: 400,
  },
});
