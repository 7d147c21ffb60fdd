// A static file server for the headless-Chromium tests (pages, bundles and model files from one folder).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { extname, join, normalize } from 'node:path';

/** Serve the files under `root` (nothing outside it); call `.listen(0, '127.0.0.1')` on the result. */
export function serveDir(root: string): Server {
  const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.json': 'application/json' };
  return createServer((req, res) => {
    const p = join(root, normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)));
    if (!p.startsWith(root) || !existsSync(p) || !statSync(p).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': types[extname(p)] ?? 'application/octet-stream' }).end(readFileSync(p));
  });
}
