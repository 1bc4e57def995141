// Calls mode: several GETs in this one session, in order (the instance's memory state and its
// row read together); every answer scrubbed, all of them at the end.
(async () => {
  const answers = [];
  for (const path of R.calls) {
    try {
      answers.push(await call(null, path, "GET"));
    } catch (e) {
      answers.push({ status: 0, error: scrub(String((e && e.cause) || e)) });
      break;
    }
  }
  reply({ status: 200, answers });
})().catch(failed);
