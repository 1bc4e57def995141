// evoctl's Evolution API calls, run in the container by a child node (no curl or wget there, so
// node's fetch). Every program is this part, then one mode's part; `R` (the request) is defined
// before it. The API key is read here, inside the container, and never leaves it: it is cut out
// of every answer, as are the fields of an answer that hold another secret evoctl never reads
// (instance tokens). A secret body field (a webhook jwt_key) arrives on stdin, over the
// encrypted data channel.
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
// The version a package.json of the image says (`WORKDIR /evolution`; `rel` under it), or null.
const imageVersion = (rel) => {
  for (const file of ["/evolution/" + rel, rel]) {
    try {
      const version = JSON.parse(fs.readFileSync(file, "utf8")).version;
      if (typeof version === "string") return version;
    } catch (e) {}
  }
  return null;
};
// The Baileys the image ships, and whether its socket code handles WhatsApp's
// companion_reg_refresh (the pairing secret rotated while linking; names it at all). No released
// Baileys does. `version` null: the package was not found (then `handles_refresh` is null too).
const baileysSeen = () => {
  const version = imageVersion("node_modules/baileys/package.json");
  let handles = null;
  if (version !== null) {
    handles = false;
    for (const dir of ["/evolution/node_modules/baileys/lib/Socket", "node_modules/baileys/lib/Socket"]) {
      try {
        for (const file of fs.readdirSync(dir)) if (/\.js$/.test(file) && fs.readFileSync(dir + "/" + file, "latin1").includes("companion_reg_refresh")) handles = true;
        break;
      } catch (e) {}
    }
  }
  return { version, handles_refresh: handles };
};
// Fields of Evolution's answers that hold a credential evoctl never reads: instance tokens
// (`token`, create's `hash`), API keys (`apikey`, older servers' shape), integration tokens.
const SECRET_FIELDS = new Set(["apikey", "token", "hash", "wavoipToken", "accessTokenWaBusiness", "Authorization", "authorization"]);
const REDACTED = "[redacted]";
const scrubValue = (value) => {
  if (Array.isArray(value)) return value.map(scrubValue);
  if (value && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = SECRET_FIELDS.has(k) && v !== null && v !== "" ? REDACTED : scrubValue(v);
    return out;
  }
  return value;
};
// An answer's text as evoctl may see it: the API key cut out, secret fields blanked.
const scrub = (text, others) => {
  let out = String(text);
  for (const secret of [key].concat(others || [])) if (typeof secret === "string" && secret.length >= 4) out = out.split(secret).join(REDACTED);
  try {
    return JSON.stringify(scrubValue(JSON.parse(out)));
  } catch (e) {
    return out;
  }
};
// Write `text` to stdout, then end the program (the calls still pending are dropped with it).
const finish = (text) => process.stdout.write(text, () => process.exit(0));
// The route check beside every call (R.route): a call that has not answered after after_ms may be
// waiting on WhatsApp (2.3.7 fetches WhatsApp Web's version with no timeout in GET / and before
// every socket start, so with SYNs to WhatsApp dropped create and connect never answer). The
// route is probed then, while the call still waits; when the task cannot reach WhatsApp the
// program says so (the call it waited on, and for how long) and ends.
const routeLost = (reach) =>
  finish(R.route.stream ? JSON.stringify(Object.assign({ e: "reach" }, reach)) + "\n" : JSON.stringify({ status: 0, route: reach }));
const besideRoute = (answer, what) => {
  if (!R.route) return answer;
  const start = Date.now();
  let settled = false;
  const timer = setTimeout(
    () =>
      whatsappReach(R.route).then((reach) => {
        if (!settled && !reach.ok) routeLost(Object.assign({ waiting_on: what, waited_ms: Date.now() - start }, reach));
      }),
    R.route.after_ms,
  );
  const done = () => {
    settled = true;
    clearTimeout(timer);
  };
  answer.then(done, done);
  return answer;
};
// One request to the API, its answer as it came (for the code here only), and the same scrubbed
// (for anything that goes back to evoctl).
const request = (body, path, method) =>
  besideRoute(
    fetch("http://127.0.0.1:" + port + (path || R.path), {
      method: method || R.method,
      headers: { apikey: key, "content-type": "application/json" },
      body: body === null ? undefined : JSON.stringify(body),
    }).then(async (r) => ({ status: r.status, body: await r.text() })),
    (method || R.method) + " " + String(path || R.path).split("?")[0],
  );
const call = (body, path, method) => request(body, path, method).then((a) => ({ status: a.status, body: scrub(a.body) }));
const parse = (text) => {
  try {
    return JSON.parse(text);
  } catch (e) {
    return null;
  }
};
const reply = (answer) => process.stdout.write(JSON.stringify(answer));
const failed = (e) => reply({ status: 0, error: scrub(String((e && e.cause) || e)) });
const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const lost = (e) => emit({ e: "error", status: 0, body: scrub(String((e && e.cause) || e)) });
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
// The live state the owner check read just before the call (null without one).
let guardState = null;
// Whether this process holds the instance: 2.3.7 answers connectionState for a row of its
// database that another process (another client name) loaded with no `state` at all.
const owned = () =>
  R.guard
    ? call(null, R.guard, "GET").then((answer) => {
        const body = parse(answer.body);
        if (answer.status === 200 && body && body.instance && typeof body.instance.state === "string") guardState = body.instance.state;
        return !(answer.status === 200 && body && body.instance && !("state" in body.instance));
      })
    : Promise.resolve(true);
// All of stdin (a secret), then `then` with it.
const readStdin = (then) => {
  let text = "";
  process.stdin.on("data", (d) => (text += d));
  process.stdin.on("end", () => then(text));
};
