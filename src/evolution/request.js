// evoctl Evolution API call (runs in the container; no curl or wget there, so node's fetch).
// The API key is read inside the container and never travels in the command string; a secret
// body field (a webhook jwt_key) arrives on stdin, over the encrypted data channel.
const R = __REQUEST__;
const fs = require("fs");
const fromFile = (name, file, sep) => {
  try {
    for (const line of fs.readFileSync(file, "latin1").split(sep)) {
      if (line.startsWith(name + "=")) return line.slice(name.length + 1).trim().replace(/^['"]|['"]$/g, "");
    }
  } catch (e) {}
  return "";
};
// A setting as the Evolution process sees it: our env, PID 1's env, then the image's .env files.
const setting = (name) =>
  process.env[name] || fromFile(name, "/proc/1/environ", "\0") || fromFile(name, "/evolution/.env", "\n") || fromFile(name, ".env", "\n");
const key = setting("AUTHENTICATION_API_KEY");
const port = process.env.SERVER_PORT || "8080";
const call = (body, path, method) =>
  fetch("http://127.0.0.1:" + port + (path || R.path), {
    method: method || R.method,
    headers: { apikey: key, "content-type": "application/json" },
    body: body === null ? undefined : JSON.stringify(body),
  }).then(async (r) => ({ status: r.status, body: await r.text() }));
const reply = (answer) => process.stdout.write(JSON.stringify(Object.assign({ key: key !== "" }, answer)));
const failed = (e) => reply({ status: 0, error: String((e && e.cause) || e) });
// Put the secret (from stdin) at the R.secret path of the body.
const withSecret = (body, secret) => {
  if (secret !== null && body !== null) {
    let node = body;
    for (const k of R.secret.slice(0, -1)) node = node[k] = node[k] || {};
    node[R.secret[R.secret.length - 1]] = secret;
  }
  return body;
};
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
// Watch mode (the connect runbook), one JSON line per event: create the instance if it is
// missing (W.create, secret from stdin), poll connect until it is open (a line per new QR and
// per state change), then check that it stays open for stable_ms.
const watch = (secret) => {
  const W = R.watch;
  const start = Date.now();
  const limit = Number(setting("QRCODE_LIMIT") || 30);
  const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
  const broken = (answer) => emit({ e: "error", status: answer.status, body: answer.body.slice(0, 4000) });
  const lost = (e) => emit({ e: "error", status: 0, body: String((e && e.cause) || e) });
  let lastCode = null;
  let lastState = null;
  let openSince = null;
  // Linked: say so with the number the row now holds (in this session, no second exec).
  const linked = () =>
    call(null, W.find_path, "GET")
      .then((found) => {
        let number = null;
        try {
          const row = JSON.parse(found.body)[0];
          number = row && row.ownerJid ? String(row.ownerJid).split("@")[0] : null;
        } catch (e) {}
        emit({ e: "linked", number });
      })
      .catch(() => emit({ e: "linked", number: null }));
  const step = () => {
    if (Date.now() - start > W.timeout_ms) return emit({ e: "timeout" });
    call(null, openSince === null ? R.path : W.state_path)
      .then((answer) => {
        let body = null;
        try {
          body = JSON.parse(answer.body);
        } catch (e) {}
        if (answer.status >= 400 || body === null || body.error === true) return broken(answer);
        const state = (body.instance && body.instance.state) || (openSince === null ? "connecting" : "close");
        if (state !== lastState) emit({ e: "state", state: (lastState = state) });
        if (state === "open") {
          if (openSince === null) openSince = Date.now();
          if (Date.now() - openSince >= W.stable_ms) return linked();
        } else if (openSince !== null) {
          return emit({ e: "flap", state });
        } else if (body.code && body.code !== lastCode) {
          lastCode = body.code;
          emit({ e: "qr", code: body.code, pairing: body.pairingCode || null, count: body.count || 0, limit });
        }
        setTimeout(step, W.interval_ms);
      })
      .catch(lost);
  };
  if (!W.create) return step();
  call(null, W.find_path, "GET")
    .then((found) => {
      let rows = null;
      try {
        rows = JSON.parse(found.body);
      } catch (e) {}
      if (found.status === 200 && Array.isArray(rows) && rows.length > 0) return step();
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
const run = (secret) => (R.watch ? watch(secret) : call(withSecret(R.body, secret)).then(reply).catch(failed));
if (R.repeat) {
  sample();
} else if (R.secret) {
  let text = "";
  process.stdin.on("data", (d) => (text += d));
  process.stdin.on("end", () => run(text));
} else {
  run(null);
}
