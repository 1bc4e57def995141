// evoctl Evolution API call (runs in the container; no curl or wget there, so node's fetch).
// The API key is read inside the container and never travels in the command string; a secret
// body field (a webhook jwt_key) arrives on stdin, over the encrypted data channel.
const R = __REQUEST__;
const fs = require("fs");
const fromFile = (file, sep) => {
  try {
    for (const line of fs.readFileSync(file, "latin1").split(sep)) {
      if (line.startsWith("AUTHENTICATION_API_KEY=")) return line.slice(23).trim().replace(/^['"]|['"]$/g, "");
    }
  } catch (e) {}
  return "";
};
const key = process.env.AUTHENTICATION_API_KEY || fromFile("/proc/1/environ", "\0") || fromFile("/evolution/.env", "\n") || fromFile(".env", "\n");
const port = process.env.SERVER_PORT || "8080";
const call = (body) =>
  fetch("http://127.0.0.1:" + port + R.path, {
    method: R.method,
    headers: { apikey: key, "content-type": "application/json" },
    body: body === null ? undefined : JSON.stringify(body),
  }).then(async (r) => ({ status: r.status, body: await r.text() }));
const reply = (answer) => process.stdout.write(JSON.stringify(Object.assign({ key: key !== "" }, answer)));
const failed = (e) => reply({ status: 0, error: String((e && e.cause) || e) });
const send = (secret) => {
  const body = R.body;
  if (secret !== null) {
    let node = body;
    for (const k of R.secret.slice(0, -1)) node = node[k] = node[k] || {};
    node[R.secret[R.secret.length - 1]] = secret;
  }
  call(body).then(reply).catch(failed);
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
if (R.repeat) {
  sample();
} else if (R.secret) {
  let text = "";
  process.stdin.on("data", (d) => (text += d));
  process.stdin.on("end", () => send(text));
} else {
  send(null);
}
