// The child process of one emulated Node.js invocation: load the handler, call it, write the outcome.
//
// The Node.js twin of _runner.py, run as `node _runner.js` with the invocation on stdin as JSON (the same spec
// the Python runner reads). The handler's console output goes to this process's stdout/stderr, which the
// emulator captures as the function's log; the outcome goes to the JSON file named by `result_path`, so a
// handler printing anything cannot corrupt it. Node's own modules only: this runs beside the user's code.
// Whatever `node` the developer has on PATH runs it, so it keeps to syntax Node 12 parses (no `?.`, no `??`);
// the tests run it with the node they find (CI: Debian's).
"use strict";

const fs = require("fs");
const path = require("path");
const util = require("util");

function stamp() {
  // The Python runner's %Y-%m-%dT%H:%M:%SZ: no milliseconds.
  return new Date().toISOString().replace(/\.\d+Z$/, "Z");
}

function makeLogger(requestId) {
  const write = (level) => (...args) => {
    process.stdout.write(`${stamp()} ${requestId} ${level} ${util.format(...args)}\n`);
  };
  return {
    debug: write("DEBUG"),
    info: write("INFO"),
    warn: write("WARN"),
    warning: write("WARN"),
    error: write("ERROR"),
  };
}

function makeContext(spec, started) {
  const deadline = started + Number(spec.timeout_ms);
  const logger = makeLogger(String(spec.request_id));
  const userData = spec.user_data || {};
  const empty = () => ""; // temporary keys come from the function's agency; emulated functions have none
  return {
    getRequestID: () => String(spec.request_id),
    getRemainingTimeInMilliSeconds: () => Math.max(0, Math.floor(deadline - now())),
    getAccessKey: empty,
    getSecretKey: empty,
    getSecurityAccessKey: empty,
    getSecuritySecretKey: empty,
    getSecurityToken: empty,
    getToken: empty,
    getUserData: (key, fallback) => {
      const value = Object.prototype.hasOwnProperty.call(userData, key) ? userData[key] : undefined;
      return value === undefined || value === null ? fallback : String(value);
    },
    getFunctionName: () => String(spec.function_name),
    getRunningTimeInSeconds: () => Math.floor(Number(spec.timeout_ms) / 1000),
    getVersion: () => "latest",
    getMemorySize: () => Number(spec.memory_size),
    getCPUNumber: () => Math.floor((Number(spec.memory_size) * 300) / 128),
    getPackage: () => String(spec.package),
    getProjectID: () => String(spec.project_id),
    getLogger: () => logger,
  };
}

function now() {
  const [seconds, nanos] = process.hrtime();
  return seconds * 1000 + nanos / 1e6;
}

function isErrorLike(value) {
  if (value instanceof Error) {
    return true;
  }
  return value !== null && typeof value === "object" && "message" in value && "name" in value;
}

// The stack without the runner's frames and the Node internals that called into the user's code: the user's
// code is what they need to read (as _runner.py drops its own frame).
function userStack(stack) {
  const lines = stack.split("\n").map((line) => line.replace(/\s+$/, ""));
  const ours = lines.findIndex((line) => line.indexOf(__filename) !== -1);
  if (ours === -1) {
    return lines;
  }
  const kept = lines.slice(0, ours);
  const internal = /^\s+at .*(\(node:internal\/|\(<anonymous>\)$|at node:internal\/)/;
  while (kept.length && internal.test(kept[kept.length - 1])) {
    kept.pop();
  }
  while (kept.length && /^(Require stack:)?$/.test(kept[kept.length - 1])) {
    kept.pop();
  }
  return kept;
}

function describe(value) {
  // The service's error object, as _runner.py writes it: errorMessage, errorType, stackTrace (lines).
  if (isErrorLike(value)) {
    const stack = typeof value.stack === "string" ? value.stack : `${value.name}: ${value.message}`;
    return {
      // A missing module's message lists the require stack, which ends in this runner: the first line says it.
      errorMessage: String(value.message).split("\nRequire stack:")[0],
      errorType: String(value.name || (value.constructor && value.constructor.name) || "Error"),
      stackTrace: userStack(stack),
    };
  }
  // `throw "text"` or `reject(42)`: no name, no stack.
  const text = typeof value === "string" ? value : util.inspect(value);
  return { errorMessage: text, errorType: "Error", stackTrace: [] };
}

function logError(value) {
  const error = describe(value);
  const text = error.stackTrace.length ? error.stackTrace.join("\n") : `Error: ${error.errorMessage}`;
  process.stderr.write(`${text}\n`);
}

function plainError(message, type) {
  return { errorMessage: message, errorType: type, stackTrace: [] };
}

function loadHandler(spec) {
  const handler = String(spec.handler);
  const dot = handler.lastIndexOf(".");
  const moduleName = dot > 0 ? handler.slice(0, dot) : "";
  const attr = dot > 0 ? handler.slice(dot + 1) : "";
  if (!moduleName || !attr) {
    return { error: plainError(`bad handler '${handler}': use module.function`, "HandlerError") };
  }
  let exported;
  try {
    // `path/to/mod.fn` is `exports.fn` of <code folder>/path/to/mod(.js); a bare require() from there finds
    // the code folder's node_modules/, where FunctionGraph merges dependency packages.
    const mod = require(path.resolve(String(spec.code_dir), moduleName));
    exported = mod === null || mod === undefined ? undefined : mod[attr];
  } catch (exc) {
    logError(exc);
    const error = describe(exc);
    const wanted = `Cannot find module '${path.resolve(String(spec.code_dir), moduleName)}'`;
    if (exc && exc.code === "MODULE_NOT_FOUND" && String(exc.message).split("\n")[0] === wanted) {
      error.errorMessage = `Cannot find module '${moduleName}' (${moduleName}.js) in the code folder`;
    }
    error.errorMessage = `cannot load handler '${handler}': ${error.errorMessage}`;
    return { error };
  }
  if (typeof exported !== "function") {
    const message = `cannot load handler '${handler}': ${moduleName} has no function exports.${attr}`;
    return { error: plainError(message, "HandlerError") };
  }
  return { fn: exported };
}

// Settles the invocation once: a handler may call back twice, or call back and also throw later.
function invoke(fn, event, context) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const ok = (value) => {
      if (!settled) {
        settled = true;
        resolve(value);
      }
    };
    const fail = (error) => {
      if (!settled) {
        settled = true;
        reject(error);
      }
    };
    process.on("uncaughtException", fail);
    process.on("unhandledRejection", fail);
    // Nothing left to run and no answer: Node would just exit, and the invocation would end with no reason.
    process.on("beforeExit", () => {
      const error = new Error(
        "the handler never answered: it did not call its callback, or its promise never settled"
      );
      error.name = "HandlerError";
      error.stack = `${error.name}: ${error.message}`;
      fail(error);
    });
    const callback = (err, result) => (err !== undefined && err !== null ? fail(err) : ok(result));
    let returned;
    try {
      returned = fn.length >= 3 ? fn(event, context, callback) : fn(event, context);
    } catch (exc) {
      fail(exc);
      return;
    }
    const thenable = returned !== null && returned !== undefined && typeof returned.then === "function";
    if (fn.length < 3) {
      if (thenable) {
        returned.then(ok, fail);
      } else {
        ok(returned);
      }
    } else if (thenable) {
      // An async handler that also takes a callback: its promise counts too (a resolved undefined does not:
      // that is an async function that will call back later).
      returned.then((value) => (value !== undefined ? ok(value) : undefined), fail);
    }
  });
}

function maxRssKb() {
  return typeof process.resourceUsage === "function" ? process.resourceUsage().maxRSS : 0;
}

function finish(spec, outcome) {
  outcome.max_rss_kb = maxRssKb();
  fs.writeFileSync(String(spec.result_path), JSON.stringify(outcome), "utf8");
  // Exit without waiting for the handler's timers and sockets, but only once the log is flushed (pipes are
  // asynchronous on macOS).
  let pending = 2;
  const done = () => {
    pending -= 1;
    if (pending === 0) {
      process.exit(0);
    }
  };
  process.stdout.write("", done);
  process.stderr.write("", done);
}

async function run(spec) {
  const loaded = loadHandler(spec);
  if (loaded.error) {
    return { ok: false, error: loaded.error };
  }
  let value;
  try {
    const event = spec.event ? JSON.parse(spec.event) : {};
    value = await invoke(loaded.fn, event, makeContext(spec, now()));
  } catch (exc) {
    logError(exc);
    return { ok: false, error: describe(exc) };
  }
  let text;
  try {
    text = JSON.stringify(value === undefined ? null : value);
  } catch (exc) {
    const message = `the handler's return value is not JSON: ${exc && exc.message}`;
    return { ok: false, error: plainError(message, (exc && exc.name) || "TypeError") };
  }
  return { ok: true, result: text };
}

function main() {
  const chunks = [];
  process.stdin.on("data", (chunk) => chunks.push(chunk));
  process.stdin.on("end", () => {
    const spec = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    process.chdir(String(spec.code_dir));
    run(spec).then(
      (outcome) => finish(spec, outcome),
      (exc) => finish(spec, { ok: false, error: describe(exc) })
    );
  });
}

main();
