// The Nimbus Node.js runtime shim (nodejs20): runs inside an instance, loads the handler, serves calls.
//
// Node's standard library only. Like the Python shim it starts generic (a warm-pool sandbox),
// connects to the agent's Unix socket (NIMBUS_SOCKET), waits for one LOAD frame, loads the handler
// ("file.export", as Lambda: `exports.handler = async (event, context) => ...`, a callback-style
// `(event, context, callback)` or a plain synchronous return), sends READY or INIT_ERROR, then
// answers INVOKE frames: each call starts as its frame arrives, so with instance_concurrency > 1
// async handlers overlap (the agent sends at most that many at once) and each reply names its
// request_id. The frame format is nimbus/nodeagent/protocol.py's.
// stdout and stderr belong to the function; on Linux, writes to a pipe are synchronous, so
// everything a call printed is in the agent's log pipe before its reply frame is sent.
'use strict';

const net = require('net');
const path = require('path');
const fs = require('fs');
const { pathToFileURL } = require('url');

const MAX_FRAME_BYTES = 96 * 1024 * 1024;

function encode(type, header, body) {
  const head = Buffer.from(JSON.stringify(Object.assign({ type }, header)));
  const data = body || Buffer.alloc(0);
  const prefix = Buffer.alloc(8);
  prefix.writeUInt32BE(head.length, 0);
  prefix.writeUInt32BE(data.length, 4);
  return Buffer.concat([prefix, head, data]);
}

class Decoder {
  constructor() {
    this.buf = Buffer.alloc(0);
  }

  feed(chunk) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const frames = [];
    while (this.buf.length >= 8) {
      const headLen = this.buf.readUInt32BE(0);
      const bodyLen = this.buf.readUInt32BE(4);
      if (headLen + bodyLen > MAX_FRAME_BYTES) throw new Error(`frame of ${headLen + bodyLen} bytes is too large`);
      const end = 8 + headLen + bodyLen;
      if (this.buf.length < end) break;
      const header = JSON.parse(this.buf.subarray(8, 8 + headLen).toString('utf8'));
      frames.push([header.type, header, Buffer.from(this.buf.subarray(8 + headLen, end))]);
      this.buf = this.buf.subarray(end);
    }
    return frames;
  }
}

function errorObject(err, type, message) {
  if (err instanceof Error) {
    return {
      errorType: type || err.name || 'Error',
      errorMessage: message !== undefined ? message : err.message,
      stackTrace: (err.stack || '').split('\n').slice(1).map((l) => l.trim()).filter(Boolean),
    };
  }
  // Lambda reports a thrown non-Error by its type: `throw "nope"` is errorType "string".
  return { errorType: type || typeof err, errorMessage: message !== undefined ? message : String(err), stackTrace: [] };
}

// An error in the function's log as Lambda's Node.js runtime writes it: one line,
// "TIMESTAMP\tREQUEST_ID\tERROR\tInvoke Error \t{"errorType","errorMessage","stack"}".
function logError(requestId, label, err, error) {
  const stack = err instanceof Error && typeof err.stack === 'string'
    ? err.stack.split('\n')
    : (error.stackTrace || []);
  const line = JSON.stringify({ errorType: error.errorType, errorMessage: error.errorMessage, stack });
  try {
    process.stderr.write(`${new Date().toISOString()}\t${requestId}\tERROR\t${label} \t${line}\n`);
  } catch (e) {
    // a closed stderr loses the line, not the call
  }
}

class InitFailure extends Error {
  constructor(error, cause) {
    super(error.errorMessage);
    this.error = error;
    this.cause = cause;
  }
}

async function loadHandler(taskRoot, spec) {
  // "dir/file.a.b": the module is up to the first dot after the last slash, the rest is the export path.
  const slash = spec.lastIndexOf('/');
  const dot = spec.indexOf('.', slash + 1);
  if (dot < 0) {
    throw new InitFailure({ errorType: 'Runtime.MalformedHandlerName', errorMessage: `Bad handler ${spec}`, stackTrace: [] });
  }
  const moduleName = spec.slice(0, dot);
  const exportPath = spec.slice(dot + 1).split('.');
  const base = path.resolve(taskRoot, moduleName);
  const file = ['.js', '.mjs', '.cjs'].map((ext) => base + ext).find((f) => fs.existsSync(f));
  if (!file) {
    throw new InitFailure({
      errorType: 'Runtime.ImportModuleError',
      errorMessage: `Error: Cannot find module '${moduleName}'`,
      stackTrace: [],
    });
  }
  let mod;
  try {
    if (file.endsWith('.mjs')) {
      mod = await import(pathToFileURL(file).href);
    } else {
      try {
        mod = require(file);
      } catch (err) {
        if (err && err.code === 'ERR_REQUIRE_ESM') mod = await import(pathToFileURL(file).href);
        else throw err;
      }
    }
  } catch (err) {
    if (err instanceof SyntaxError) throw new InitFailure(errorObject(err, 'Runtime.UserCodeSyntaxError'), err);
    if (err && err.code === 'MODULE_NOT_FOUND') throw new InitFailure(errorObject(err, 'Runtime.ImportModuleError'), err);
    throw new InitFailure(errorObject(err), err);
  }
  let handler = mod;
  for (const key of exportPath) handler = handler == null ? undefined : handler[key];
  if (typeof handler !== 'function') {
    throw new InitFailure({
      errorType: 'Runtime.HandlerNotFound',
      errorMessage: `${spec} is undefined or not exported`,
      stackTrace: [],
    });
  }
  return handler;
}

// What LOAD said about this instance (its ARN, log group and stream); the same for every call.
const instance = { functionArn: '', logGroupName: '', logStreamName: '' };

function makeContext(h, finish) {
  const deadline = Number(h.deadline_ms || 0);
  const remaining = () => Math.max(0, deadline - Date.now());
  const context = {
    awsRequestId: h.request_id,
    requestId: h.request_id,
    functionName: h.function_name,
    functionVersion: h.function_version,
    memoryLimitInMB: String(h.memory_limit_mb),
    invokedFunctionArn: instance.functionArn,
    logGroupName: instance.logGroupName,
    logStreamName: instance.logStreamName,
    // Kept for code that sets it; the reply never waits for the event loop to empty (the
    // instance's connection to the agent keeps it busy for ever).
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: remaining,
    // DESIGN.md's names, for code shared with the Python runtime.
    request_id: h.request_id,
    function_name: h.function_name,
    function_version: h.function_version,
    memory_limit_mb: Number(h.memory_limit_mb),
    get_remaining_time_ms: remaining,
    // The legacy context methods some old handlers still call.
    succeed: (result) => finish(null, result),
    fail: (err) => finish(err == null ? new Error('handled') : err),
    done: (err, result) => finish(err, result),
  };
  // As on Lambda: present only when the invoke carried them.
  if (h.client_context) context.clientContext = h.client_context;
  if (h.identity) context.identity = h.identity;
  return context;
}

const inflight = new Set(); // the finish functions of the calls in flight

function invoke(handler, header, body) {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    let settled = false;
    const finish = (err, result, fatal) => {
      if (settled) return;
      settled = true;
      inflight.delete(finish);
      const durationUs = Number((process.hrtime.bigint() - started) / 1000n);
      if (err != null) {
        const error = err.errorType ? err : errorObject(err);
        logError(header.request_id, 'Invoke Error', err, error);
        resolve(['ERROR', Buffer.from(JSON.stringify(error)), durationUs, fatal]);
        return;
      }
      let out;
      try {
        out = JSON.stringify(result === undefined ? null : result);
      } catch (e) {
        const error = errorObject(e, 'Runtime.MarshalError', `Unable to stringify response body: ${e.message}`);
        logError(header.request_id, 'Invoke Error', e, error);
        resolve(['ERROR', Buffer.from(JSON.stringify(error)), durationUs]);
        return;
      }
      resolve(['RESULT', Buffer.from(out === undefined ? 'null' : out), durationUs]);
    };
    inflight.add(finish);
    let event;
    try {
      event = body.length ? JSON.parse(body.toString('utf8')) : {};
    } catch (e) {
      finish({ errorType: 'Runtime.UnmarshalError', errorMessage: `Unable to unmarshal input: ${e.message}`, stackTrace: [] });
      return;
    }
    const context = makeContext(header, finish);
    let ret;
    try {
      ret = handler(event, context, (err, result) => finish(err == null ? null : err, result));
    } catch (err) {
      finish(err == null ? new Error('null thrown') : err);
      return;
    }
    if (ret && typeof ret.then === 'function') {
      ret.then((r) => finish(null, r), (e) => finish(e == null ? new Error('null rejection') : e));
    } else if (handler.length < 3) {
      finish(null, ret); // synchronous, callback-less
    }
    // else: a callback-style handler answers through its callback (or context.done/succeed/fail)
  });
}

function onCrash(kind, err) {
  // Lambda treats an error nobody awaited as fatal to the runtime: fail the calls and be replaced
  // (which of several overlapping calls caused it cannot be known).
  if (inflight.size) {
    for (const finish of [...inflight]) finish(errorObject(err, kind), undefined, true);
  } else {
    const label = kind === 'Runtime.UnhandledPromiseRejection' ? 'Unhandled Promise Rejection' : 'Uncaught Exception';
    logError(undefined, label, err, errorObject(err, kind));
    process.exit(1);
  }
}

async function main() {
  const sockPath = process.env.NIMBUS_SOCKET;
  delete process.env.NIMBUS_SOCKET;
  const sock = net.createConnection(sockPath);
  sock.setNoDelay(true);
  const decoder = new Decoder();
  const queue = [];
  let wake = null;
  sock.on('data', (chunk) => {
    for (const frame of decoder.feed(chunk)) queue.push(frame);
    if (wake) { const w = wake; wake = null; w(); }
  });
  sock.on('close', () => process.exit(0)); // the agent closed: the instance is being stopped
  sock.on('error', () => process.exit(0));
  const next = async () => {
    while (!queue.length) await new Promise((r) => { wake = r; });
    return queue.shift();
  };
  const send = (type, header, body) => new Promise((r) => sock.write(encode(type, header, body), r));

  const [kind, load] = await next();
  if (kind !== 'LOAD') throw new Error(`nimbus runtime: expected LOAD, got ${kind}`);
  const started = process.hrtime.bigint();
  Object.assign(process.env, load.env || {});
  instance.functionArn = load.function_arn || '';
  instance.logGroupName = load.log_group_name || '';
  instance.logStreamName = load.log_stream_name || '';
  process.chdir(load.task_root);
  let handler;
  try {
    handler = await loadHandler(load.task_root, load.handler);
  } catch (err) {
    const error = err instanceof InitFailure ? err.error : errorObject(err);
    logError(undefined, 'Uncaught Exception', err instanceof InitFailure ? err.cause : err, error);
    await send('INIT_ERROR', error);
    process.exit(1);
  }
  await send('READY', { init_duration_us: Number((process.hrtime.bigint() - started) / 1000n) });
  process.on('uncaughtException', (err) => onCrash('Runtime.UncaughtException', err));
  process.on('unhandledRejection', (err) => onCrash('Runtime.UnhandledPromiseRejection', err));

  let sending = 0;
  let dying = false;
  const serve = async (header, body) => {
    const [reply, out, durationUs, fatal] = await invoke(handler, header, body);
    // What the call deferred to the next turn of the event loop (Express logs a route's error so)
    // still runs within the call and is logged with it, as on Lambda, where the runtime's answer
    // to the Runtime API takes a round trip first.
    await new Promise((r) => setImmediate(r));
    const h = { request_id: header.request_id, duration_us: durationUs };
    if (fatal) {
      h.fatal = true;
      dying = true;
    }
    sending += 1;
    await send(reply, h, out);
    sending -= 1;
    if (dying && sending === 0 && inflight.size === 0) process.exit(1);
  };
  for (;;) {
    const [type, header, body] = await next();
    if (type !== 'INVOKE') throw new Error(`nimbus runtime: unexpected frame ${type}`);
    serve(header, body);
  }
}

module.exports = { encode, Decoder, invoke, loadHandler, errorObject };

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`nimbus runtime: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  });
}
