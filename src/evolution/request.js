// evoctl Evolution API call (runs in the container; no curl or wget there, so node's fetch).
// The API key is read inside the container and never travels in the command string; a secret
// body field (a webhook jwt_key) arrives on stdin, over the encrypted data channel.
const R = __REQUEST__;
const fs = require("fs");
// A variable's value in a NAME=VALUE file, or null when the file does not set it.
const fromFile = (name, file, sep) => {
  try {
    for (const line of fs.readFileSync(file, "latin1").split(sep)) {
      if (line.startsWith(name + "=")) return line.slice(name.length + 1).trim().replace(/^['"]|['"]$/g, "");
    }
  } catch (e) {}
  return null;
};
// A setting as Evolution 2.3.7 reads it: a variable that is set (our env, else PID 1's, which
// holds the task's) wins even when empty, as dotenv never overrides one; only an unset one
// comes from the image's .env. The caller applies the code default to an empty value.
const setting = (name) => {
  if (Object.prototype.hasOwnProperty.call(process.env, name)) return process.env[name];
  for (const [file, sep] of [["/proc/1/environ", "\0"], ["/evolution/.env", "\n"], [".env", "\n"]]) {
    const value = fromFile(name, file, sep);
    if (value !== null) return value;
  }
  return "";
};
const key = setting("AUTHENTICATION_API_KEY") || "BQYHJGJHJ";
const port = setting("SERVER_PORT") || "8080";
const call = (body, path, method) =>
  fetch("http://127.0.0.1:" + port + (path || R.path), {
    method: method || R.method,
    headers: { apikey: key, "content-type": "application/json" },
    body: body === null ? undefined : JSON.stringify(body),
  }).then(async (r) => ({ status: r.status, body: await r.text() }));
const parse = (text) => {
  try {
    return JSON.parse(text);
  } catch (e) {
    return null;
  }
};
const reply = (answer) => process.stdout.write(JSON.stringify(answer));
const failed = (e) => reply({ status: 0, error: String((e && e.cause) || e) });
const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const lost = (e) => emit({ e: "error", status: 0, body: String((e && e.cause) || e) });
const broken = (answer) => emit({ e: "error", status: answer.status, body: answer.body.slice(0, 4000) });
// Put the secret (from stdin) at the R.secret path of the body.
const withSecret = (body, secret) => {
  if (secret !== null && body !== null) {
    let node = body;
    for (const k of R.secret.slice(0, -1)) node = node[k] = node[k] || {};
    node[R.secret[R.secret.length - 1]] = secret;
  }
  return body;
};
// Whether this process holds the instance: 2.3.7 answers connectionState for a row of its
// database that another process (another client name) loaded with no `state` at all.
const owned = () =>
  R.guard
    ? call(null, R.guard, "GET").then((answer) => {
        const body = parse(answer.body);
        return !(answer.status === 200 && body && body.instance && !("state" in body.instance));
      })
    : Promise.resolve(true);
// Repeat mode: the same call every interval_ms for duration_ms, in this one session.
const sample = () => {
  const start = Date.now();
  const samples = [];
  const next = () =>
    call(null)
      .then((answer) => {
        samples.push({ t: Date.now() - start, status: answer.status, body: answer.body });
        if (Date.now() - start + R.repeat.interval_ms <= R.repeat.duration_ms) setTimeout(next, R.repeat.interval_ms);
        else reply({ status: 200, samples });
      })
      .catch(failed);
  next();
};
// Gone mode (delete): read the webhook the cleanup will wait on, delete, then poll until the
// name is no longer listed, one JSON line per event.
const gone = () => {
  const G = R.gone;
  const start = Date.now();
  call(null, G.webhook_path, "GET")
    .then((found) => {
      const row = found.status === 200 ? parse(found.body) : null;
      const headers = (row && row.headers) || {};
      const jwt = Object.prototype.hasOwnProperty.call(headers, "jwt_key") ? headers.jwt_key : undefined;
      emit({
        e: "webhook",
        url: row ? row.url : null,
        remove: !!(row && row.enabled && Array.isArray(row.events) && row.events.includes("REMOVE_INSTANCE")),
        jwt_empty: jwt !== undefined && (typeof jwt !== "string" || jwt === ""),
      });
      return call(null);
    })
    .then((answer) => {
      const body = parse(answer.body);
      if (answer.status >= 400 || body === null || body.error === true) return broken(answer);
      emit({ e: "deleted" });
      const poll = () =>
        call(null, G.find_path, "GET")
          .then((listed) => {
            if (listed.status === 404) return emit({ e: "gone", t: Date.now() - start });
            if (listed.status !== 200) return broken(listed);
            if (Date.now() - start > G.timeout_ms) return emit({ e: "timeout", t: Date.now() - start });
            emit({ e: "pending", t: Date.now() - start });
            setTimeout(poll, G.interval_ms);
          })
          .catch(lost);
      poll();
    })
    .catch(lost);
};
// Watch mode (the connect runbook), one JSON line per event: create the instance if it is
// missing (W.create, secret from stdin), poll connect until it is open (a line per new QR and
// per state change), then check that it stays open for stable_ms. A code the server held
// before this flow began (2.3.7 keeps the last flow's QR after a logout) is never shown: only
// a code the server rotated to after the flow's first answer is.
const watch = (secret) => {
  const W = R.watch;
  const start = Date.now();
  const limit = parseInt(setting("QRCODE_LIMIT")) || 30;
  let lastCode = null;
  let lastState = null;
  let openSince = null;
  let stale = null;
  let startedFromClose = false;
  let first = true;
  let wasConnecting = false;
  // Linked: say so with the number the row now holds (in this session, no second exec).
  const linked = () =>
    call(null, W.find_path, "GET")
      .then((found) => {
        const rows = parse(found.body);
        const row = Array.isArray(rows) ? rows[0] : null;
        emit({ e: "linked", number: row && row.ownerJid ? String(row.ownerJid).split("@")[0] : null });
      })
      .catch(() => emit({ e: "linked", number: null }));
  const step = () => {
    if (Date.now() - start > W.timeout_ms) return emit({ e: "timeout" });
    call(null, openSince === null ? R.path : W.state_path)
      .then((answer) => {
        const body = parse(answer.body);
        if (answer.status >= 400 || body === null || body.error === true) return broken(answer);
        const state = (body.instance && body.instance.state) || (openSince === null ? "connecting" : "close");
        if (state !== lastState) emit({ e: "state", state: (lastState = state) });
        if (state === "open") {
          if (openSince === null) openSince = Date.now();
          if (W.first_only) return emit({ e: "linked", number: null });
          if (Date.now() - openSince >= W.stable_ms) return linked();
        } else if (openSince !== null) {
          return emit({ e: "flap", state });
        } else {
          if (first && startedFromClose && body.code) stale = body.code;
          if (W.number && wasConnecting && body.code && !body.pairingCode) return emit({ e: "pairing_ignored" });
          if (body.code && body.code !== lastCode && body.code !== stale) {
            lastCode = body.code;
            emit({ e: "qr", code: body.code, pairing: body.pairingCode || null, count: body.count || 0, limit });
            if (W.first_only) return;
          }
        }
        first = false;
        setTimeout(step, W.interval_ms);
      })
      .catch(lost);
  };
  // The state before the first connect: from `close` that connect starts a new flow (and may
  // answer with the last flow's code); from `connecting` it ignores `?number=`.
  const begin = () =>
    call(null, W.state_path, "GET")
      .then((answer) => {
        const body = parse(answer.body);
        const state = body && body.instance ? body.instance.state : undefined;
        if (answer.status === 200 && body && body.instance && state === undefined) return emit({ e: "foreign" });
        if (answer.status >= 400) return broken(answer);
        startedFromClose = state === "close";
        wasConnecting = state === "connecting";
        step();
      })
      .catch(lost);
  if (!W.create) return begin();
  call(null, W.find_path, "GET")
    .then((found) => {
      const rows = parse(found.body);
      if (found.status === 200 && Array.isArray(rows) && rows.length > 0) return begin();
      if (found.status !== 200 && found.status !== 404) return broken(found);
      return call(withSecret(W.create, secret), "/instance/create", "POST").then((made) => {
        if (made.status === 403) return emit({ e: "taken" });
        if (made.status >= 400) return broken(made);
        emit({ e: "created" });
        step();
      });
    })
    .catch(lost);
};
const run = (secret) =>
  R.watch
    ? watch(secret)
    : owned()
        .then((mine) => (mine ? call(withSecret(R.body, secret)).then(reply) : reply({ status: 0, foreign: true })))
        .catch(failed);
if (R.repeat) {
  sample();
} else if (R.gone) {
  owned()
    .then((mine) => (mine ? gone() : emit({ e: "foreign" })))
    .catch(lost);
} else if (R.secret) {
  let text = "";
  process.stdin.on("data", (d) => (text += d));
  process.stdin.on("end", () => run(text));
} else {
  run(null);
}
