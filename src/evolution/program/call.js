// Call mode: one API call on this process's instance (a row another process holds is refused
// before anything is sent), the secret from stdin put in the body when there is one.
const run = (secret) =>
  owned()
    .then((mine) =>
      mine
        ? call(withSecret(R.body, secret)).then((answer) => reply(Object.assign(answer, { state: guardState })))
        : reply({ status: 0, foreign: true }),
    )
    .catch(failed);
if (R.secret) readStdin(run);
else run(null);
