// Fixture of `npm run build` (real: tsc -p tsconfig.worker.json && next build): compiles cron/ to dist/cron/.
'use strict';
const fs = require('fs');
const path = require('path');

const out = path.join('dist', 'cron');
fs.mkdirSync(out, { recursive: true });
for (const name of ['fileServer.js', 'worker.js']) {
  fs.copyFileSync(path.join('cron', name), path.join(out, name));
}
console.log('fixture build: dist/cron ready');
