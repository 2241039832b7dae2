// Builds the web console into dist/, which corrald serves at / (`--web-root`).
// Everything is bundled: no CDN, no external fonts. The consoles (noVNC, xterm) are split
// into their own chunks and loaded only when a console is opened.
import { defineConfig } from 'vite';

export default defineConfig({
  base: './',
  oxc: {
    jsx: { runtime: 'automatic', importSource: 'preact' },
  },
  // `CORRAL_URL=https://127.0.0.1:7001 npm run dev`: the dev server passes the API (and its
  // websockets) on to a running corrald, whose certificate is the cluster CA's.
  server: process.env.CORRAL_URL
    ? { proxy: { '/api': { target: process.env.CORRAL_URL, secure: false, ws: true, changeOrigin: true } } }
    : {},
  build: {
    outDir: 'dist',
    target: 'es2022',
    chunkSizeWarningLimit: 400,
  },
});
