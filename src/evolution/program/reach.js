// Reach (a mode of its own, and the watch's check): can this task open a TLS connection to
// WhatsApp's web endpoint? DNS, then TCP, then the TLS handshake (verified as Baileys' websocket
// verifies it), all within T.timeout_ms; the answer names the stage that failed.
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
if (R.reach) whatsappReach(R.reach).then((result) => reply({ status: 200, reach: result }));
