// Repeat mode: the same call every interval_ms for duration_ms, in this one session.
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
