// evoctl cp, in the container: a child node runs this with `C` (the copy) defined before it.
// It uses node alone (no tar, base64, sha256sum or nc in the image). What it says goes to
// stdout as records, `<kind:1 byte><length:u32 BE><payload>`, which the runner carries over the
// data channel as base64 marker lines:
//   S {files, bytes}             (get) what follows, counted before the first byte
//   K {path, mode}               (get) a directory of the tree
//   H {path, mode, size}         (get) a file begins; D records follow, then T
//   D <bytes>                    (get) the next bytes of the current file
//   T {path, bytes, sha256}      a file is whole: (put) verified and renamed into place
//   P {bytes}                    (put) bytes written so far, about every MiB
//   W {message}                  a note (an entry skipped)
//   F {message, fix, kind}       the copy failed; nothing was left behind; exit 1
// `put` reads the files' bytes from stdin, one after another, each exactly its size. A file is
// written to a temporary name beside its destination and renamed only once its SHA-256 matches
// the one evoctl computed; a janitor process of its own (outside the session's process group,
// which ending the session kills) removes any temporary file left when this process ends
// without renaming it.
const fs = require("fs");
const path = require("path");
const crypto = require("crypto");
const pause = new Int32Array(new SharedArrayBuffer(4));
const out = (b) => {
  for (let at = 0; at < b.length;) {
    try { at += fs.writeSync(1, b, at, b.length - at); }
    catch (e) { if (e.code !== "EAGAIN") throw e; Atomics.wait(pause, 0, 0, 1); }
  }
};
const record = (kind, payload) => {
  const body = Buffer.isBuffer(payload) ? payload : Buffer.from(JSON.stringify(payload));
  const head = Buffer.alloc(5);
  head[0] = kind.charCodeAt(0);
  head.writeUInt32BE(body.length, 1);
  out(Buffer.concat([head, body]));
};
class Refusal extends Error {
  constructor(message, fix, kind) { super(message); this.fix = fix || null; this.kind = kind || "usage"; }
}
const lstat = (p) => { try { return fs.lstatSync(p); } catch (e) { if (e.code === "ENOENT") return null; throw e; } };
// A destination that is a symlink is never written through.
const notLink = (p, st) => {
  if (st && st.isSymbolicLink()) {
    let to = "";
    try { to = " (it points to " + fs.readlinkSync(p) + ")"; } catch (e) {}
    throw new Refusal(p + " is a symbolic link" + to + "; evoctl cp does not write through a link into another place", "copy to the path it points to, or remove the link first");
  }
};
let janitor = null;
const guard = (line) => {
  if (janitor === null) {
    janitor = require("child_process").spawn(process.execPath, ["-e", "const l=new Set();let b='';process.stdin.on('data',(d)=>{b+=d;const s=b.split('\\n');b=s.pop();for(const x of s){if(x[0]==='+')l.add(x.slice(1));else l.delete(x.slice(1));}});process.stdin.on('end',()=>{for(const p of l){try{require('fs').unlinkSync(p)}catch(e){}}})"], { detached: true, stdio: ["pipe", "ignore", "ignore"] });
    janitor.unref();
    janitor.stdin.on("error", () => {});
  }
  janitor.stdin.write(line + "\n");
};
const temps = new Set();
const tempBeside = (target) => {
  const tmp = path.join(path.dirname(target), "." + path.basename(target) + ".evoctl-" + crypto.randomBytes(6).toString("hex") + ".tmp");
  guard("+" + tmp);
  temps.add(tmp);
  return tmp;
};
const dropTemp = (tmp) => {
  try { fs.unlinkSync(tmp); } catch (e) {}
  temps.delete(tmp);
  guard("-" + tmp);
};
const finish = (code) => {
  for (const tmp of temps) { try { fs.unlinkSync(tmp); } catch (e) {} }
  if (janitor === null) process.exit(code);
  janitor.stdin.end(() => process.exit(code));
};
const fail = (e) => {
  if (e instanceof Refusal) record("F", { message: e.message, fix: e.fix, kind: e.kind });
  else record("F", { message: (e && e.message) || String(e), fix: null, kind: "io" });
  finish(1);
};
// Whatever goes wrong is said as a failure record, so evoctl ends the session at once.
process.on("uncaughtException", (e) => fail(e));
process.on("SIGHUP", () => finish(129));
process.on("SIGTERM", () => finish(143));
process.on("SIGINT", () => finish(130));

// get: one file, or a tree with C.recursive; the top path is followed when it is a link, links
// inside a tree are skipped with a note (as they are not files to copy).
const get = () => {
  const top = C.src;
  let st;
  try { st = fs.statSync(top); } catch (e) {
    if (e.code === "ENOENT") throw new Refusal(top + " does not exist in the container", "check the path (relative paths start at the container's working directory, " + process.cwd() + ")");
    throw e;
  }
  const entries = [];
  if (st.isDirectory()) {
    if (!C.recursive) throw new Refusal(top + " is a directory", "to copy it and everything in it: `" + C.again + "`");
    const walk = (rel) => {
      const full = rel === "" ? top : path.join(top, rel);
      for (const name of fs.readdirSync(full).sort()) {
        const r = rel === "" ? name : path.join(rel, name);
        const s = fs.lstatSync(path.join(full, name));
        if (s.isDirectory()) { entries.push({ dir: true, path: r, mode: s.mode & 0o7777 }); walk(r); }
        else if (s.isFile()) entries.push({ dir: false, path: r, mode: s.mode & 0o7777, size: s.size });
        else record("W", { message: "skipped " + path.join(top, r) + ": " + (s.isSymbolicLink() ? "a symbolic link" : "not a regular file") });
      }
    };
    entries.push({ dir: true, path: "", mode: st.mode & 0o7777 });
    walk("");
  } else if (st.isFile()) {
    entries.push({ dir: false, path: "", mode: st.mode & 0o7777, size: st.size });
  } else {
    throw new Refusal(top + " is not a regular file or a directory", "copy a file, or a directory with -r");
  }
  const files = entries.filter((e) => !e.dir);
  record("S", { files: files.length, bytes: files.reduce((n, e) => n + e.size, 0) });
  const buffer = Buffer.alloc(64 * 1024);
  for (const entry of entries) {
    if (entry.dir) { record("K", { path: entry.path, mode: entry.mode }); continue; }
    const full = entry.path === "" ? top : path.join(top, entry.path);
    const fd = fs.openSync(full, "r");
    const hash = crypto.createHash("sha256");
    const now = fs.fstatSync(fd);
    record("H", { path: entry.path, mode: now.mode & 0o7777, size: now.size });
    let bytes = 0;
    for (;;) {
      const n = fs.readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      const chunk = buffer.subarray(0, n);
      hash.update(chunk);
      record("D", chunk);
      bytes += n;
    }
    fs.closeSync(fd);
    record("T", { path: entry.path, bytes, sha256: hash.digest("hex") });
  }
  finish(0);
};

// put: where each file goes, checked before a byte is read; then the bytes from stdin.
const put = () => {
  const dst = C.dst;
  const st = lstat(dst);
  notLink(dst, st);
  let root;
  if (C.recursive) {
    if (st && !st.isDirectory()) throw new Refusal(dst + " exists and is not a directory", "give a directory (or a new name) as the destination of a directory");
    root = st ? path.join(dst, C.name) : dst;
    if (!st && dst.endsWith("/")) throw new Refusal("no directory " + dst + " in the container", "create it first, or leave out the trailing /");
  } else if (st && st.isDirectory()) {
    root = path.join(dst, C.name);
  } else {
    if (dst.endsWith("/")) throw new Refusal("no directory " + dst + " in the container", "create it first, or leave out the trailing /");
    root = dst;
  }
  const targets = C.files.map((f) => (f.path === "" ? root : path.join(root, f.path)));
  for (const target of targets) {
    const parent = path.dirname(target);
    const inTree = C.recursive && (parent === root || parent.startsWith(root + "/"));
    const pst = lstat(parent);
    if (!inTree && !(pst && fs.statSync(parent).isDirectory())) throw new Refusal("no directory " + parent + " in the container", "create it first (`evoctl exec " + C.env + " -- mkdir -p " + parent + "`)");
    const tst = lstat(target);
    notLink(target, tst);
    if (tst && tst.isDirectory()) throw new Refusal(target + " is a directory in the container", "give a file name as the destination, or the directory to copy into");
  }
  // Directories made here get their exact mode at the end (a read-only one would refuse its
  // own files, and mkdir's mode is cut by the umask).
  const made = [];
  for (const d of C.dirs) {
    const full = d.path === "" ? root : path.join(root, d.path);
    const dst2 = lstat(full);
    notLink(full, dst2);
    if (dst2 && !dst2.isDirectory()) throw new Refusal(full + " exists and is not a directory", "move it away, or copy to another place");
    if (!dst2) { fs.mkdirSync(full, { mode: 0o700 }); made.push([full, d.mode]); }
  }
  const modes = () => { for (const [full, mode] of made.reverse()) fs.chmodSync(full, mode); };
  let index = -1, fd = null, hash = null, left = 0, tmp = null, written = 0, told = 0;
  const next = () => {
    for (;;) {
      index += 1;
      if (index >= C.files.length) return false;
      const f = C.files[index];
      tmp = tempBeside(targets[index]);
      fd = fs.openSync(tmp, "wx", 0o600);
      hash = crypto.createHash("sha256");
      left = f.size;
      if (left > 0) return true;
      close();
    }
  };
  const close = () => {
    const f = C.files[index], target = targets[index];
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    const sha256 = hash.digest("hex");
    if (sha256 !== f.sha256) throw new Refusal(target + ": the SHA-256 of what arrived (" + sha256 + ") is not the one sent (" + f.sha256 + "); nothing was written", "copy it again", "verify");
    fs.chmodSync(tmp, f.mode);
    notLink(target, lstat(target));
    fs.renameSync(tmp, target);
    temps.delete(tmp);
    guard("-" + tmp);
    record("T", { path: f.path, bytes: f.size, sha256 });
  };
  const stdin = process.stdin;
  const done = () => {
    if (index < C.files.length) {
      const f = C.files[index];
      throw new Refusal("the input ended after " + (f.size - left) + " of " + f.size + " bytes of " + targets[index] + "; nothing was written", "copy it again", "truncated");
    }
    modes();
    finish(0);
  };
  if (!next()) { modes(); return finish(0); }
  stdin.on("data", (chunk) => {
    try {
      let at = 0;
      while (at < chunk.length) {
        if (index >= C.files.length) throw new Refusal("more input arrived than the files hold", "copy it again", "truncated");
        const n = Math.min(left, chunk.length - at);
        const part = chunk.subarray(at, at + n);
        fs.writeSync(fd, part);
        hash.update(part);
        left -= n;
        at += n;
        written += n;
        if (left === 0) { close(); next(); }
      }
      if (written - told >= 1024 * 1024) { told = written; record("P", { bytes: written }); }
    } catch (e) { stdin.pause(); fail(e); }
  });
  stdin.on("end", () => { try { done(); } catch (e) { fail(e); } });
  stdin.on("error", fail);
};

try { if (C.op === "get") get(); else put(); } catch (e) { fail(e); }
