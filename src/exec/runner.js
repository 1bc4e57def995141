// evoctl run envelope (runs inside the container under node; no shell needed).
// SPEC = {"n": nonce, "argv": [cmd, ...args], "stdin": bool}
// Every line evoctl reads is "\n<MARK><kind>:<base64>\n"; anything else on the tty is ignored.
const S = __SPEC__;
const M = "EVOCTL-" + S.n + ":";
// Synchronous writes straight to fd 1: a stream write can be queued in node (when the tty
// answers EAGAIN) and process.exit would then drop it.
const fs = require("fs");
const pause = new Int32Array(new SharedArrayBuffer(4));
const out = (text) => {
  const b = Buffer.from(text);
  for (let at = 0; at < b.length;) {
    try { at += fs.writeSync(1, b, at, b.length - at); }
    catch (e) { if (e.code !== "EAGAIN") throw e; Atomics.wait(pause, 0, 0, 1); }
  }
};
const say = (k, b) => out("\n" + M + k + ":" + Buffer.from(b).toString("base64") + "\n");
const done = (c) => { say("X", String(c)); process.exit(0); };
const start = (input) => {
  let child;
  try {
    child = require("child_process").spawn(S.argv[0], S.argv.slice(1), { stdio: [input === null ? "ignore" : "pipe", "pipe", "pipe"] });
  } catch (e) { say("E", "evoctl: " + e.message + "\n"); return done(127); }
  child.stdout.on("data", (d) => say("O", d));
  child.stderr.on("data", (d) => say("E", d));
  child.on("error", (e) => { say("E", "evoctl: " + S.argv[0] + ": " + e.message + "\n"); done(e.code === "ENOENT" ? 127 : 126); });
  child.on("close", (code, sig) => done(code === null ? 128 + (require("os").constants.signals[sig] || 0) : code));
  if (input !== null) { child.stdin.on("error", () => {}); child.stdin.end(input); }
};
if (!S.stdin) { start(null); } else {
  // Secrets and large inputs come over the data channel: raw mode (no echo), then a ready mark.
  if (process.stdin.isTTY) process.stdin.setRawMode(true);
  // Pieces are kept as they come (no re-scan of what arrived before): the input can be large.
  const pieces = [];
  let ended = false;
  process.stdin.on("data", (d) => {
    if (ended) return;
    const piece = d.toString("latin1");
    const end = piece.indexOf(".");
    pieces.push(end >= 0 ? piece.slice(0, end) : piece);
    if (end >= 0) { ended = true; process.stdin.pause(); if (process.stdin.isTTY) process.stdin.setRawMode(false); start(Buffer.from(pieces.join("").replace(/[^A-Za-z0-9+/=]/g, ""), "base64")); }
  });
  say("R", "");
}
