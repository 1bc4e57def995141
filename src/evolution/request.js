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
  let reachChecked = false;
  const step = () => {
    if (Date.now() - start > W.timeout_ms) return emit({ e: "timeout" });
    // No QR for a while: can the task reach WhatsApp at all? (2.3.7 answers {count:0} for ever
    // when Baileys cannot connect.)
    if (W.reach && !reachChecked && lastCode === null && openSince === null && Date.now() - start >= W.reach.after_ms) {
      reachChecked = true;
      return whatsappReach(W.reach).then((result) => {
        emit(Object.assign({ e: "reach" }, result));
        if (result.ok) setTimeout(step, W.interval_ms);
      });
    }
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
// Reach mode (and the watch's check): can this task open a TLS connection to WhatsApp's web
// endpoint? DNS, then TCP, then the TLS handshake (verified as Baileys' websocket verifies it),
// all within T.timeout_ms; the answer names the stage that failed.
const whatsappReach = (T) =>
  new Promise((resolve) => {
    const start = Date.now();
    let stage = "dns";
    let socket = null;
    let ended = false;
    const done = (result) => {
      if (ended) return;
      ended = true;
      clearTimeout(timer);
      if (socket) socket.destroy();
      resolve(Object.assign({ host: T.host, port: T.port, stage, ms: Date.now() - start }, result));
    };
    const timer = setTimeout(() => done({ ok: false, code: "TIMEOUT" }), T.timeout_ms);
    require("dns").lookup(T.host, (err, address) => {
      if (err) return done({ ok: false, code: err.code || "DNS" });
      stage = "connect";
      const net = require("net");
      const options = { host: address, port: T.port, ALPNProtocols: ["http/1.1"] };
      if (!net.isIP(T.host)) options.servername = T.host;
      socket = require("tls").connect(options);
      socket.once("connect", () => (stage = "tls"));
      socket.once("secureConnect", () => done({ ok: true }));
      socket.once("error", (e) => done({ ok: false, code: e.code || "ERROR", message: String(e.message) }));
    });
  });
// Probe mode (webhook test): sign a JWT with the instance's own jwt_key exactly as 2.3.7 does
// and POST a probe payload to its webhook URL (byEvents: URL + "/" + the probe's suffix), as
// axios would; the answer has the status and latency. The token and the key never leave the
// container: a receiver's body is returned only with them cut out. `expected` (stdin) is the
// secret evoctl.toml names, compared here so that it is never sent back either.
const b64url = (b) => Buffer.from(b).toString("base64").replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
const signJwt = (secret) => {
  const iat = Math.floor(Date.now() / 1000);
  const input = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" })) + "." + b64url(JSON.stringify({ iat, exp: iat + 600, app: "evolution", action: "webhook" }));
  return input + "." + b64url(require("crypto").createHmac("sha256", secret).update(input).digest());
};
const probe = (expected) => {
  const P = R.probe;
  call(null, P.find_path, "GET")
    .then((found) => {
      if (found.status !== 200) return reply({ status: found.status, body: found.body });
      const row = parse(found.body);
      if (!row) return reply({ status: 200, probe: { e: "no_webhook" } });
      const stored = row.headers && typeof row.headers === "object" ? row.headers : {};
      const hasKey = Object.prototype.hasOwnProperty.call(stored, "jwt_key");
      const key = stored.jwt_key;
      const base = {
        url: row.url,
        enabled: !!row.enabled,
        by_events: !!row.webhookByEvents,
        jwt: hasKey,
        matches_config: expected === null ? null : hasKey && key === expected,
      };
      // One answer only (a response's end and a late socket error can both come).
      let answered = false;
      const answer = (fields) => {
        if (answered) return;
        answered = true;
        reply({ status: 200, probe: Object.assign(base, fields) });
      };
      if (hasKey && (typeof key !== "string" || key === "")) return answer({ e: "jwt_unusable" });
      if (!/^https?:\/\//.test(row.url || "")) return answer({ e: "bad_url" });
      const headers = {};
      for (const [k, v] of Object.entries(stored)) {
        if (k === "jwt_key" || (hasKey && k.toLowerCase() === "authorization")) continue;
        if (["string", "number", "boolean"].includes(typeof v)) headers[k] = String(v);
      }
      const token = hasKey ? signJwt(key) : null;
      if (token) headers.Authorization = "Bearer " + token;
      const target = row.webhookByEvents ? row.url + "/" + P.suffix : row.url;
      const payload = JSON.stringify({
        event: P.event,
        instance: P.instance,
        data: { evoctl_probe: true, note: "a delivery test from evoctl webhook test; no action is expected" },
        destination: row.url,
        date_time: new Date().toISOString(),
        sender: null,
        server_url: setting("SERVER_URL") || null,
        apikey: null,
      });
      const scrub = (text) => {
        let out = String(text);
        for (const secret of [token, key, expected]) if (typeof secret === "string" && secret) out = out.split(secret).join("[redacted]");
        return out;
      };
      const start = Date.now();
      let request;
      try {
        const client = require(target.startsWith("https:") ? "https" : "http");
        headers["Content-Type"] = "application/json";
        headers["Content-Length"] = String(Buffer.byteLength(payload));
        headers["X-Evoctl-Probe"] = "1";
        request = client.request(target, { method: "POST", headers });
      } catch (e) {
        return answer({ e: "failed", target, code: e.code || "ERR_INVALID_URL", message: scrub(e.message), ms: 0 });
      }
      const timer = setTimeout(() => request.destroy(Object.assign(new Error("no answer within " + P.timeout_ms + " ms"), { code: "PROBE_TIMEOUT" })), P.timeout_ms);
      request.on("response", (response) => {
        const ms = Date.now() - start;
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (d) => { if (body.length < 2000) body += d; });
        const finish = () => {
          clearTimeout(timer);
          answer({ e: "answered", target, http_status: response.statusCode, ms, location: response.headers.location || null, body: scrub(body.slice(0, 300)) });
        };
        response.on("end", finish);
        response.on("error", finish);
      });
      request.on("error", (e) => {
        clearTimeout(timer);
        answer({ e: "failed", target, code: e.code || "ERROR", message: scrub(e.message), ms: Date.now() - start });
      });
      request.end(payload);
    })
    .catch(failed);
};
const run = (secret) =>
  R.watch
    ? watch(secret)
    : owned()
        .then((mine) => (mine ? call(withSecret(R.body, secret)).then(reply) : reply({ status: 0, foreign: true })))
        .catch(failed);
if (R.reach) {
  whatsappReach(R.reach).then((result) => reply({ status: 200, reach: result }));
} else if (R.probe) {
  // A row another Evolution process holds is refused before anything is sent.
  const checked = (expected) =>
    owned()
      .then((mine) => (mine ? probe(expected) : reply({ status: 0, foreign: true })))
      .catch(failed);
  if (!R.probe.with_expected) {
    checked(null);
  } else {
    let text = "";
    process.stdin.on("data", (d) => (text += d));
    process.stdin.on("end", () => checked(text));
  }
} else if (R.repeat) {
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
