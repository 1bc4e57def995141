// Watch mode (the connect runbook), one JSON line per event: create the instance if it is
// missing (W.create, secret from stdin), poll connect until it is open (a line per new QR and
// per state change; every first_code_interval_ms until a first code, then every interval_ms),
// then check that it stays open for stable_ms. A code the server held
// before this flow began (2.3.7 keeps the last flow's QR after a logout) is never shown: only
// a code the server rotated to after the flow's first answer is.
const watch = (secret) => {
  const W = R.watch;
  const start = Date.now();
  // The Baileys the image ships (baileysSeen, common.js), said before anything else.
  emit(Object.assign({ e: "baileys", log_baileys: setting("LOG_BAILEYS") || "error" }, baileysSeen()));
  // The bound holds even while a call waits: at timeout_ms the watch ends whatever is pending.
  setTimeout(() => finish(JSON.stringify({ e: "timeout" }) + "\n"), W.timeout_ms).unref();
  const limit = parseInt(setting("QRCODE_LIMIT")) || 30;
  let lastCode = null;
  let lastCount = 0;
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
        emit({
          e: "linked",
          number: row && row.ownerJid ? String(row.ownerJid).split("@")[0] : null,
          row_status: row ? row.connectionStatus : null,
          row_code: row ? row.disconnectionReasonCode : null,
          row_at: row ? row.disconnectionAt : null,
        });
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
          if (W.first_only) return linked();
          if (Date.now() - openSince >= W.stable_ms) return linked();
        } else if (openSince !== null) {
          return emit({ e: "flap", state });
        } else {
          if (first && startedFromClose && body.code) stale = body.code;
          if (W.number && wasConnecting && body.code && !body.pairingCode) return emit({ e: "pairing_ignored" });
          // 2.3.7's QR count only grows until QRCODE_LIMIT is reached, which refuses the
          // instance, closes it and resets the count (whatsapp.baileys.service.ts:335-364,
          // monitor.service.ts:428-447): a count lower than one shown means that happened.
          if (lastCode !== null && typeof body.count === "number" && body.count < lastCount) return emit({ e: "refused", count: lastCount, limit });
          if (body.code && body.code !== lastCode && body.code !== stale) {
            lastCode = body.code;
            lastCount = body.count || 0;
            emit({ e: "qr", code: body.code, pairing: body.pairingCode || null, count: body.count || 0, limit });
            if (W.first_only) return;
          }
        }
        first = false;
        // Until a first code, connect of a connecting instance answers from memory and the code
        // may appear any moment (about 1 s after the connect that started the socket answers).
        setTimeout(step, lastCode === null && openSince === null ? W.first_code_interval_ms : W.interval_ms);
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
// The reach check comes with this mode (reach.js); the secret, when there is one, from stdin.
if (R.secret) readStdin(watch);
else watch(null);
