// Events, newest first, live: a websocket sends the last ones and then each new one as it is
// committed (one JSON Event per text frame). When the socket closes the page falls back to
// polling GET /api/v1/events, and tries the socket again now and then.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { get, wsProtocols, wsUrl } from '../api.js';
import { eventKind, eventLevel, label, time } from '../format.js';
import { ErrorBox } from '../ui.jsx';

const KEEP = 1000;
const TAIL = 300;
const POLL_MS = 3000;
const RETRY_SOCKET_MS = 15000;

function merge(old, fresh) {
  const byIndex = new Map(old.map((e) => [String(e.index), e]));
  for (const e of fresh) byIndex.set(String(e.index), e);
  return [...byIndex.values()].sort((a, b) => Number(b.index) - Number(a.index)).slice(0, KEEP);
}

export function Events() {
  const [events, setEvents] = useState([]);
  const [mode, setMode] = useState('connecting');
  const [error, setError] = useState(null);
  const [filter, setFilter] = useState('');
  const latest = useRef(0);

  useEffect(() => {
    let ws = null;
    let poll = null;
    let retry = null;
    let gone = false;
    const add = (list) => {
      for (const e of list) latest.current = Math.max(latest.current, Number(e.index));
      setEvents((old) => merge(old, list));
    };
    const pollOnce = async () => {
      try {
        const answer = await get('/events', { limit: TAIL });
        add(answer.events || []);
        setError(null);
      } catch (e) {
        setError(e);
      }
    };
    const startPolling = () => {
      if (poll || gone) return;
      setMode('polling');
      pollOnce();
      poll = setInterval(pollOnce, POLL_MS);
      retry = setTimeout(connect, RETRY_SOCKET_MS);
    };
    const connect = () => {
      if (gone) return;
      const params = latest.current ? { after_index: latest.current } : { tail: TAIL };
      try {
        ws = new WebSocket(wsUrl('/events/websocket', params), wsProtocols());
      } catch {
        // A token the browser will not send as a subprotocol: polling does without.
        startPolling();
        return;
      }
      ws.onopen = () => {
        clearInterval(poll);
        poll = null;
        setMode('live');
      };
      let batch = [];
      ws.onmessage = (m) => {
        try {
          batch.push(JSON.parse(m.data));
        } catch {
          return;
        }
        if (batch.length === 1) {
          queueMicrotask(() => {
            const b = batch;
            batch = [];
            add(b);
          });
        }
      };
      ws.onclose = () => {
        ws = null;
        if (!gone) startPolling();
      };
    };
    connect();
    return () => {
      gone = true;
      clearInterval(poll);
      clearTimeout(retry);
      if (ws) ws.close(1000);
    };
  }, []);

  const shown = useMemo(() => {
    const needle = filter.trim().toLowerCase();
    if (!needle) return events;
    return events.filter(
      (e) =>
        e.message.toLowerCase().includes(needle) ||
        (e.user || '').toLowerCase().includes(needle) ||
        eventKind(e).includes(needle),
    );
  }, [events, filter]);

  return (
    <div data-testid="events-page">
      <div class="title-row">
        <h1>Events</h1>
        <span class={`badge mode-${mode}`} data-testid="events-mode">
          {mode === 'live' ? 'live' : mode === 'polling' ? 'polling (the live socket closed)' : 'connecting…'}
        </span>
      </div>
      <div class="filters">
        <input
          placeholder="Filter…"
          value={filter}
          onInput={(e) => setFilter(e.currentTarget.value)}
          data-testid="events-filter"
        />
        <span class="muted">{shown.length} shown</span>
      </div>
      <ErrorBox error={error} />
      <table class="list" data-testid="event-table">
        <thead>
          <tr>
            <th>#</th>
            <th>Time</th>
            <th>Kind</th>
            <th>User</th>
            <th>Message</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((e) => (
            <tr key={e.index} class={`level-${eventLevel(e)}`} data-testid="event-row" data-index={e.index}>
              <td>{e.index}</td>
              <td class="nowrap">{time(e.time_unix_ms)}</td>
              <td class="nowrap">{label(eventKind(e))}</td>
              <td>{e.user}</td>
              <td>{e.message}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
