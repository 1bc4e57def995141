// evoctl run envelope: evaluated in the container by the bootstrap (the command line) as the
// body of a function of `rest`, the input that followed this program on the data channel.
// SPEC = {"n": nonce, "argv": [cmd, ...args] | null, "program": node source | null,
//         "streamed": bool (the node program follows as a stream), "stdin": bool}
// Every line evoctl reads is "\n<MARK><kind>:<base64>\n"; anything else on the tty is ignored.
// Output goes as it arrives, in pieces of at most 64 KiB: as it is (O, E), or as one whole raw
// deflate stream (o, e) when that is smaller (the base64 of everything is what the agent's
// ~1 MB/s carries). Nothing waits for more output and no compressor holds bytes back.
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
// A piece of at least 512 bytes goes compressed when deflate saves a tenth of it. Its first 4 KiB
// are tried first, so random or already compressed bytes cost a 4 KiB deflate, not a 64 KiB one;
// level 1: the container's CPU is Evolution's, and the agent's pace is the limit.
const zlib = require("zlib");
const deflated = (b) => {
  if (b.length < 512) return null;
  const probe = zlib.deflateRawSync(b.subarray(0, 4096), { level: 1 });
  if (probe.length * 10 > Math.min(b.length, 4096) * 9) return null;
  if (b.length <= 4096) return probe;
  const z = zlib.deflateRawSync(b, { level: 1 });
  return z.length * 10 <= b.length * 9 ? z : null;
};
const emit = (k, d) => {
  for (let at = 0; at < d.length; at += 65536) {
    const b = d.subarray(at, at + 65536);
    const z = deflated(b);
    if (z === null) say(k, b); else say(k.toLowerCase(), z);
  }
};
// A node program runs in a child node that reads it from fd 3, so neither the command line nor
// the child's argv (what `ps` shows) carries it.
const FD3 = "const c=[],s=new (require('net').Socket)({fd:3,readable:true,writable:false});s.on('data',(d)=>c.push(d));s.on('end',()=>{s.destroy();eval(Buffer.concat(c).toString())})";
const tty = process.stdin;
const node = S.argv === null;
const argv = node ? [process.execPath, "-e", FD3] : S.argv;
const stdio = [S.stdin ? "pipe" : "ignore", "pipe", "pipe"].concat(node ? ["pipe"] : []);
let child;
try {
  child = require("child_process").spawn(argv[0], argv.slice(1), { stdio });
} catch (e) { say("E", "evoctl: " + e.message + "\n"); done(127); }
child.stdout.on("data", (d) => emit("O", d));
child.stderr.on("data", (d) => emit("E", d));
child.on("error", (e) => { say("E", "evoctl: " + argv[0] + ": " + e.message + "\n"); done(e.code === "ENOENT" ? 127 : 126); });
child.on("close", (code, sig) => done(code === null ? 128 + (require("os").constants.signals[sig] || 0) : code));
// The streams that follow, in order: the program (to fd 3), then the command's input.
const sinks = [];
if (node) {
  child.stdio[3].on("error", () => {});
  if (S.streamed) sinks.push(child.stdio[3]); else child.stdio[3].end(S.program);
}
if (S.stdin) { child.stdin.on("error", () => {}); sinks.push(child.stdin); }
const finished = () => { tty.pause(); if (tty.isTTY) tty.setRawMode(false); };
// Each piece is its own base64, ended by "," (more follows) or "." (the stream's end). A piece
// is passed on as soon as it is whole; while the child does not take it, the tty is not read,
// so the data channel holds the rest back.
let held = false;
const resume = () => { if (held) { held = false; tty.resume(); } };
const put = (sink, bytes) => {
  if (sink.destroyed || sink.write(bytes) || held) return;
  held = true;
  tty.pause();
  const go = () => { sink.off("drain", go); sink.off("close", go); resume(); };
  sink.on("drain", go);
  sink.on("close", go);
};
const MARK = /[,.]/g;
let part = [];
const take = (text) => {
  let at = 0;
  while (sinks.length > 0) {
    MARK.lastIndex = at;
    const m = MARK.exec(text);
    if (m === null) { if (at < text.length) part.push(text.slice(at)); return; }
    part.push(text.slice(at, m.index));
    at = m.index + 1;
    const bytes = Buffer.from(part.join("").replace(/[^A-Za-z0-9+/=]/g, ""), "base64");
    part = [];
    const sink = sinks[0];
    if (bytes.length > 0) put(sink, bytes);
    if (m[0] === ".") {
      sinks.shift();
      if (!sink.destroyed) sink.end();
      if (sinks.length === 0) finished();
    }
  }
};
if (sinks.length === 0) finished();
else {
  take(rest);
  if (sinks.length > 0) { tty.on("data", (d) => take(d.toString("latin1"))); if (!held) tty.resume(); }
}
