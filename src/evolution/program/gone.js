// Gone mode (delete): read the webhook the cleanup will wait on, delete, then poll until the
// name is no longer listed, one JSON line per event.
const gone = () => {
  const G = R.gone;
  const start = Date.now();
  call(null, G.webhook_path, "GET")
    .then((found) => {
      const row = found.status === 200 ? parse(found.body) : null;
      const headers = (row && row.headers) || {};
      const jwt = Object.prototype.hasOwnProperty.call(headers, "jwt_key") ? headers.jwt_key : undefined;
      emit({
        e: "webhook",
        url: row ? row.url : null,
        remove: !!(row && row.enabled && Array.isArray(row.events) && row.events.includes("REMOVE_INSTANCE")),
        jwt_empty: jwt !== undefined && (typeof jwt !== "string" || jwt === ""),
        by_events: !!(row && row.webhookByEvents),
      });
      return call(null);
    })
    .then((answer) => {
      const body = parse(answer.body);
      if (answer.status >= 400 || body === null || body.error === true) return broken(answer);
      emit({ e: "deleted" });
      const poll = () =>
        call(null, G.find_path, "GET")
          .then((listed) => {
            if (listed.status === 404) return emit({ e: "gone", t: Date.now() - start });
            if (listed.status !== 200) return broken(listed);
            if (Date.now() - start > G.timeout_ms) return emit({ e: "timeout", t: Date.now() - start });
            emit({ e: "pending", t: Date.now() - start });
            setTimeout(poll, G.interval_ms);
          })
          .catch(lost);
      poll();
    })
    .catch(lost);
};
owned()
  .then((mine) => (mine ? gone() : emit({ e: "foreign" })))
  .catch(lost);
