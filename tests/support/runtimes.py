"""Function code for the runtime tests that more than one module runs: Node.js handlers of every
shape, and a custom runtime (`provided`) speaking the Lambda Runtime API."""

NODE_HANDLERS = """
exports.asyncHandler = async (event, context) => ({
  event,
  requestId: context.awsRequestId,
  same: context.requestId === context.request_id,
  name: context.functionName,
  version: context.functionVersion,
  memory: context.memoryLimitInMB,
  left: context.getRemainingTimeInMillis(),
  greeting: process.env.GREETING,
  cwd: process.cwd(),
});
exports.syncHandler = (event) => ({ sync: event.n * 2 });
exports.callbackHandler = (event, context, callback) => {
  setTimeout(() => callback(null, { cb: event.n }), 5);
};
exports.callbackError = (event, context, callback) => callback(new TypeError('bad callback'));
exports.throws = async () => { const e = new RangeError('out of range'); throw e; };
exports.nested = { deeper: async () => 'nested ok' };
exports.rejectsLater = async () => {
  setTimeout(() => Promise.reject(new Error('nobody awaited me')), 1);
  await new Promise((r) => setTimeout(r, 50));
  return 'late';
};
exports.logs = async (event) => {
  console.log('out one');
  console.error('err two');
  process.stdout.write('out three\\n');
  return 'logged';
};
"""

RUNTIME_API_CLIENT = r"""#!/usr/bin/python3.11
import http.client, json, os, sys

conn = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])

def call(method, path, body=None, headers=None):
    conn.request(method, "/2018-06-01/runtime" + path, body, headers or {})
    res = conn.getresponse()
    return res, res.read()

if os.environ.get("MODE") == "init_error":
    call("POST", "/init/error", json.dumps({"errorType": "Boom", "errorMessage": "cannot start"}),
         {"Lambda-Runtime-Function-Error-Type": "Boom"})
    sys.exit(1)
print("runtime starting", flush=True)
while True:
    res, body = call("GET", "/invocation/next")
    rid = res.getheader("Lambda-Runtime-Aws-Request-Id")
    event = json.loads(body)
    if event.get("exit"):
        os._exit(7)
    if event.get("fail"):
        error = {"errorType": "MyError", "errorMessage": "on purpose"}
        call("POST", f"/invocation/{rid}/error", json.dumps(error),
             {"Lambda-Runtime-Function-Error-Type": "Unhandled"})
        continue
    print("handling", rid, flush=True)
    wrong, _ = call("POST", "/invocation/not-the-current-one/response", "{}")
    out = {
        "event": event,
        "request_id": rid,
        "deadline_ms": int(res.getheader("Lambda-Runtime-Deadline-Ms")),
        "arn": res.getheader("Lambda-Runtime-Invoked-Function-Arn"),
        "trace": res.getheader("Lambda-Runtime-Trace-Id"),
        "handler": os.environ["_HANDLER"],
        "task_root": os.environ["LAMBDA_TASK_ROOT"],
        "greeting": os.environ.get("GREETING"),
        "wrong_id_status": wrong.status,
    }
    call("POST", f"/invocation/{rid}/response", json.dumps(out))
"""
