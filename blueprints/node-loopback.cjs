// Preloaded into every Node.js process of an app whose server listens on all interfaces with no
// option to choose (ai-toolkit's file server calls `server.listen(port)`): blueprints set
// NODE_OPTIONS="--require <this file>" (functions.sh: aikore_node_loopback), which Node passes on to
// child processes and cluster workers, so every TCP listen of the app ends up on 127.0.0.1, where
// AiKore's proxy reaches it and nothing else can. Loopback addresses, Unix sockets, inherited
// handles and file descriptors are left as they are.
'use strict';

const net = require('net');

const original = net.Server.prototype.listen;
let reported = false;

function isLoopback(host) {
  return typeof host === 'string' && (host === 'localhost' || host === '::1' || /^127\./.test(host));
}

function isPortLike(value) {
  return value === undefined || value === null || typeof value === 'number'
    || (typeof value === 'string' && /^\d+$/.test(value));
}

net.Server.prototype.listen = function aikoreLoopbackListen(...args) {
  const first = args[0];
  let options;
  let rest;
  if (first !== null && typeof first === 'object') {
    // A handle, a server or a socket to share, an fd or a Unix socket path: not a TCP port.
    if (first._handle || 'handle' in first || 'fd' in first || 'path' in first || first instanceof net.Server) {
      return original.apply(this, args);
    }
    options = { ...first };
    rest = args.slice(1);
  } else if (isPortLike(first)) {
    // listen([port[, host[, backlog]]][, callback]), Node's own order.
    options = {};
    if (first !== undefined && first !== null) options.port = first;
    let next = 1;
    if (typeof args[next] === 'string') options.host = args[next++];
    if (typeof args[next] === 'number') options.backlog = args[next++];
    rest = args.slice(next);
  } else {
    return original.apply(this, args); // a Unix socket path (a string that is not a number)
  }
  if (!isLoopback(options.host)) {
    if (!reported) {
      reported = true;
      process.stderr.write(`[aikore] node: listen on ${options.host || 'all interfaces'} moved to 127.0.0.1 `
        + `(port ${options.port === undefined ? 'any' : options.port}, pid ${process.pid})\n`);
    }
    options.host = '127.0.0.1';
    delete options.ipv6Only;
  }
  return original.call(this, options, ...rest);
};
