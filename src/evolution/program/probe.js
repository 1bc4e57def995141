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
// The answer, as a promise: `{status: 200, probe}`, or the webhook row's read as `{status, body}`
// when it failed (`status: 0` with `error` when the API did not answer).
const webhookProbe = (P, expected) =>
  new Promise((resolve) => {
    // The row as stored (its Authorization header is sent as Evolution sends it); nothing of it
    // goes back to evoctl unscrubbed.
    request(null, P.find_path, "GET")
      .then((found) => {
        if (found.status !== 200) return resolve({ status: found.status, body: scrub(found.body) });
        const row = parse(found.body);
        if (!row) return resolve({ status: 200, probe: { e: "no_webhook" } });
        const stored = row.headers && typeof row.headers === "object" ? row.headers : {};
        const hasKey = Object.prototype.hasOwnProperty.call(stored, "jwt_key");
        const jwtKey = stored.jwt_key;
        const base = {
          url: row.url,
          enabled: !!row.enabled,
          by_events: !!row.webhookByEvents,
          jwt: hasKey,
          matches_config: expected === null ? null : hasKey && jwtKey === expected,
        };
        // One answer only (a response's end and a late socket error can both come).
        let answered = false;
        const answer = (fields) => {
          if (answered) return;
          answered = true;
          resolve({ status: 200, probe: Object.assign(base, fields) });
        };
        if (hasKey && (typeof jwtKey !== "string" || jwtKey === "")) return answer({ e: "jwt_unusable" });
        if (!/^https?:\/\//.test(row.url || "")) return answer({ e: "bad_url" });
        const headers = {};
        for (const [k, v] of Object.entries(stored)) {
          if (k === "jwt_key" || (hasKey && k.toLowerCase() === "authorization")) continue;
          if (["string", "number", "boolean"].includes(typeof v)) headers[k] = String(v);
        }
        const token = hasKey ? signJwt(jwtKey) : null;
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
        const credentials = Object.entries(stored).filter(([k, v]) => typeof v === "string" && /auth|key|token|secret|pass/i.test(k)).map(([, v]) => v);
        // What the receiver says goes back with every secret of this probe cut out first, then cut
        // to length (a secret split by the cut would survive otherwise).
        const hide = (text, max) => scrub(String(text), [token, jwtKey, expected].concat(credentials)).slice(0, max);
        const start = Date.now();
        let outgoing;
        try {
          const client = require(target.startsWith("https:") ? "https" : "http");
          headers["Content-Type"] = "application/json";
          headers["Content-Length"] = String(Buffer.byteLength(payload));
          headers["X-Evoctl-Probe"] = "1";
          // The server posts with axios, which names itself unless a stored header says otherwise
          // (2.3.7's package-lock.json:5805-5806 resolves it to 1.13.2; the image ships it).
          const axios = imageVersion("node_modules/axios/package.json");
          if (axios && !Object.keys(headers).some((k) => k.toLowerCase() === "user-agent")) headers["User-Agent"] = "axios/" + axios;
          // 2.4 adds its tracking headers to every per-instance webhook, over the stored ones
          // (webhook.controller.ts:128-136 at 2.4.0-rc2; the User-Agent says 2.3.7 there too).
          if (/^2\.(4|[5-9]|\d\d)\./.test(imageVersion("package.json") || "")) {
            Object.assign(headers, {
              "X-Instance-ID": String(row.instanceId),
              "X-Instance-Name": P.instance,
              "X-Event-Type": P.event,
              "X-Timestamp": String(Date.now()),
              "User-Agent": "EvolutionAPI-Webhook/2.3.7",
            });
          }
          outgoing = client.request(target, { method: "POST", headers });
        } catch (e) {
          return answer({ e: "failed", target, code: e.code || "ERR_INVALID_URL", message: hide(e.message, 300), ms: 0 });
        }
        const timer = setTimeout(() => outgoing.destroy(Object.assign(new Error("no answer within " + P.timeout_ms + " ms"), { code: "PROBE_TIMEOUT" })), P.timeout_ms);
        outgoing.on("response", (response) => {
          const ms = Date.now() - start;
          let body = "";
          response.setEncoding("utf8");
          response.on("data", (d) => { if (body.length < 2000) body += d; });
          const finish = () => {
            clearTimeout(timer);
            answer({ e: "answered", target, http_status: response.statusCode, ms, location: response.headers.location ? hide(response.headers.location, 300) : null, body: hide(body, 300) });
          };
          response.on("end", finish);
          response.on("error", finish);
        });
        outgoing.on("error", (e) => {
          clearTimeout(timer);
          answer({ e: "failed", target, code: e.code || "ERROR", message: hide(e.message, 300), ms: Date.now() - start });
        });
        outgoing.end(payload);
      })
      .catch((e) => resolve({ status: 0, error: scrub(String((e && e.cause) || e)) }));
  });
// Probe mode (webhook test): a row another Evolution process holds is refused before anything
// is sent.
const checked = (expected) =>
  owned()
    .then((mine) => (mine ? webhookProbe(R.probe, expected).then(reply) : reply({ status: 0, foreign: true })))
    .catch(failed);
if (R.probe) {
  if (R.probe.with_expected) readStdin(checked);
  else checked(null);
}
