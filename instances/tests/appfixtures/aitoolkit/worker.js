// Fixture of ai-toolkit's job worker (dist/cron/worker.js): records what it got, then idles.
'use strict';
const fs = require('fs');
const path = require('path');

const dir = process.env.INSTANCE_CONF_DIR || process.cwd();
const record = { argv: process.argv.slice(2), cwd: process.cwd(), pid: process.pid, env: process.env };
fs.writeFileSync(path.join(dir, 'fixture-worker.json'), JSON.stringify(record, null, 1));
console.log('fixture worker running');
setInterval(() => {}, 60_000);
