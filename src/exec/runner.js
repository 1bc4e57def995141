// evoctl run envelope: evaluated in the container by the bootstrap (the command line) as the
// body of a function of `rest`, the input that followed this program on the data channel.
// SPEC = {"n": nonce, "argv": [cmd, ...args] | null, "program": node source | null, "stdin": bool}
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
// A node program runs in a child node that reads it from fd 3, so neither the command line nor
// the child's argv (what `ps` shows) carries it.
const FD3 = "const c=[],s=new (require('net').Socket)({fd:3,readable:true,writable:false});s.on('data',(d)=>c.push(d));s.on('end',()=>{s.destroy();eval(Buffer.concat(c).toString())})";
const start = (input) => {
  let child;
  const stdio = [input === null ? "ignore" : "pipe", "pipe", "pipe"];
  const cp = require("child_process");
  const argv = S.program === null ? S.argv : [process.execPath, "-e", FD3];
  try {
    child = cp.spawn(argv[0], argv.slice(1), { stdio: S.program === null ? stdio : stdio.concat("pipe") });
  } catch (e) { say("E", "evoctl: " + e.message + "\n"); return done(127); }
  child.stdout.on("data", (d) => say("O", d));
  child.stderr.on("data", (d) => say("E", d));
  child.on("error", (e) => { say("E", "evoctl: " + argv[0] + ": " + e.message + "\n"); done(e.code === "ENOENT" ? 127 : 126); });
  child.on("close", (code, sig) => done(code === null ? 128 + (require("os").constants.signals[sig] || 0) : code));
  if (S.program !== null) { child.stdio[3].on("error", () => {}); child.stdio[3].end(S.program); }
  if (input !== null) { child.stdin.on("error", () => {}); child.stdin.end(input); }
};
const tty = process.stdin;
if (!S.stdin) {
  if (tty.isTTY) tty.setRawMode(false);
  start(null);
} else {
  // The command's input follows the program, base64 ended by "."; pieces are kept as they come
  // (no re-scan of what arrived before): the input can be large.
  const pieces = [];
  let ended = false;
  const take = (piece) => {
    if (ended) return;
    const end = piece.indexOf(".");
    pieces.push(end >= 0 ? piece.slice(0, end) : piece);
    if (end < 0) return;
    ended = true;
    tty.pause();
    if (tty.isTTY) tty.setRawMode(false);
    start(Buffer.from(pieces.join("").replace(/[^A-Za-z0-9+/=]/g, ""), "base64"));
  };
  take(rest);
  if (!ended) { tty.on("data", (d) => take(d.toString("latin1"))); tty.resume(); }
}
