// Fixture of ai-toolkit's front server (dist/cron/fileServer.js), with its real argument handling:
// no parser, `dev` anywhere means dev mode, `--port N` picks the port, everything else is ignored;
// AI_TOOLKIT_FILE_SERVER_WORKERS cluster workers (2 here) share the public port, which it listens on
// with `server.listen(port)` (every interface) as the real one does. It records what it got to
// $INSTANCE_CONF_DIR/fixture-record.json and answers 200 on / (404 elsewhere), recording requests.
'use strict';
const cluster = require('cluster');
const fs = require('fs');
const http = require('http');
const path = require('path');

const isDev = process.argv.includes('dev');
function argValue(name, fallback) {
  const i = process.argv.indexOf(name);
  if (i !== -1 && process.argv[i + 1]) {
    const v = parseInt(process.argv[i + 1], 10);
    if (!isNaN(v)) return v;
  }
  return fallback;
}
const PUBLIC_PORT = argValue('--port', isDev ? 3000 : 8675);
const workers = parseInt(process.env.AI_TOOLKIT_FILE_SERVER_WORKERS || '2', 10);
const file = path.join(process.env.INSTANCE_CONF_DIR || process.cwd(), 'fixture-record.json');

function save(record) {
  fs.writeFileSync(file + '.tmp', JSON.stringify(record, null, 1));
  fs.renameSync(file + '.tmp', file);
}

if (cluster.isPrimary) {
  const record = {
    app: 'ai-toolkit', argv: process.argv.slice(2), cwd: process.cwd(), env: process.env, pid: process.pid,
    bind: { port: PUBLIC_PORT, dev: isDev }, workers: [], requests: [],
  };
  save(record);
  for (let i = 0; i < workers; i++) cluster.fork({ PUBLIC_PORT: String(PUBLIC_PORT) });
  cluster.on('message', (worker, message) => {
    if (message.listening) record.workers.push({ pid: worker.process.pid, address: message.listening });
    if (message.request) record.requests.push(message.request);
    save(record);
  });
  process.on('SIGTERM', () => process.exit(0));
} else {
  const server = http.createServer((req, res) => {
    const status = req.url.split('?')[0] === '/' ? 200 : 404;
    process.send({ request: { path: req.url, status, agent: req.headers['user-agent'] || '' } });
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ app: 'ai-toolkit', path: req.url, host: req.headers.host, pid: process.pid }));
  });
  server.requestTimeout = 0;
  server.listen(PUBLIC_PORT, () => process.send({ listening: server.address() }));
}
