// Checkup mode (doctor's in-task layers), all in this one session, in order, one JSON line per
// layer the moment it is known: node itself (the trial), the mount that holds the session's key
// directory when a volume is claimed for it (from /proc/mounts), GET /, verify-creds, the route to
// WhatsApp, the instance's state, its row, its webhook, and a signed webhook probe when asked.
// It stops where the next layers could not be judged: no answer from the API, a refused key (or
// one evoctl already knows is a public default), an instance that is missing or held by another
// Evolution process. The configured secret the probe compares with comes on stdin.
const C = R.checkup;
const step = (id, fields) => emit(Object.assign({ id }, fields));
const expectedSecret = new Promise((resolve) => (C.probe && C.probe.with_expected ? readStdin(resolve) : resolve(null)));
// The deepest mount of /proc/mounts that holds `dir` (mount points are container paths; a space
// in one is written \040).
const mountOf = (dir) => {
  try {
    let best = null;
    for (const line of fs.readFileSync("/proc/mounts", "utf8").split("\n")) {
      const [source, raw, type] = line.split(" ");
      if (!raw || !type) continue;
      const point = raw.replace(/\\040/g, " ");
      const base = point.replace(/\/+$/, "");
      const holds = base === "" || dir === base || dir.startsWith(base + "/");
      if (holds && (!best || base.length >= best.mount_point.replace(/\/+$/, "").length)) best = { source, mount_point: point, fs_type: type };
    }
    return best ? { mount: best } : { error: "no mount in /proc/mounts holds " + dir };
  } catch (e) {
    return { error: scrub(String(e)) };
  }
};
const checkup = async () => {
  step("exec-trial", { node: process.version });
  if (C.session_dir) step("session-store", mountOf(C.session_dir));
  const answered = async (id, path, method) => {
    try {
      const answer = await call(null, path, method);
      step(id, answer);
      return answer;
    } catch (e) {
      step(id, { status: 0, error: scrub(String((e && e.cause) || e)) });
      return null;
    }
  };
  // The route to WhatsApp is checked beside GET /: 2.3.7 fetches WhatsApp Web's version on
  // every GET / with no timeout, so without a route it answers only when the kernel gives up
  // (~135 s). When the route fails first, GET / is said as still waiting and the rest goes on.
  const started = Date.now();
  const reach = whatsappReach(C.reach);
  const welcome = call(null, "/", "GET").catch((e) => ({ status: 0, error: scrub(String((e && e.cause) || e)) }));
  const first = await Promise.race([welcome.then((a) => ({ a })), reach.then((r) => (r.ok ? welcome.then((a) => ({ a })) : {}))]);
  if (first.a) {
    // With GET / the Baileys the image ships (baileysSeen, common.js): the pairing facts.
    step("evolution", Object.assign({ baileys: baileysSeen() }, first.a));
    if (first.a.status !== 200) return;
  } else step("evolution", { status: 0, waiting: true, waited_ms: Date.now() - started });
  const creds = await answered("api-key", "/verify-creds", "POST");
  if (!creds || creds.status !== 200 || C.key_is_a_default) return;
  step("whatsapp-reach", { reach: await reach });
  const state = await answered("instance", C.state_path, "GET");
  if (!state || state.status !== 200) return;
  // A row of this database that another process loaded answers with no `state` at all.
  const body = parse(state.body);
  if (body && body.instance && !("state" in body.instance)) return;
  await answered("instance-health", C.find_path, "GET");
  if (C.webhook_path) await answered("webhook", C.webhook_path, "GET");
  if (C.probe) step("webhook-delivery", await webhookProbe(C.probe, await expectedSecret));
};
// Ended here whatever is still pending (a GET / waiting on WhatsApp).
checkup()
  .catch((e) => step("error", { status: 0, error: scrub(String((e && e.cause) || e)) }))
  .then(() => finish(""));
