// Small pieces every page uses: loading a resource (with polling), showing the server's
// error words, status badges, a dialog that asks for a value (a reason, a host) before an
// action, and a button that runs an action and reports its refusal.
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { del } from './api.js';
import { label } from './format.js';

/**
 * Loads `load()` now, again when `deps` change, and every `pollMs` (0: never). Keeps the last
 * good data while a reload runs or fails.
 */
export function useResource(load, deps, pollMs = 0) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const seq = useRef(0);
  const reload = useCallback(async () => {
    const mine = ++seq.current;
    try {
      const data = await load();
      if (mine === seq.current) setState({ data, error: null, loading: false });
    } catch (error) {
      if (mine === seq.current) setState((s) => ({ data: s.data, error, loading: false }));
    }
  }, deps);
  useEffect(() => {
    setState((s) => ({ ...s, loading: true }));
    reload();
    if (!pollMs) return () => seq.current++;
    const id = setInterval(reload, pollMs);
    return () => {
      clearInterval(id);
      seq.current++;
    };
  }, [reload, pollMs]);
  return { ...state, reload };
}

export function ErrorBox({ error, testid = 'error' }) {
  if (!error) return null;
  return (
    <div class="error" role="alert" data-testid={testid}>
      {error.message || String(error)}
    </div>
  );
}

export function Notes({ notes, testid = 'notes' }) {
  if (!notes || notes.length === 0) return null;
  return (
    <ul class="notes" data-testid={testid}>
      {notes.map((n) => (
        <li key={n}>{n}</li>
      ))}
    </ul>
  );
}

export function Badge({ value, kind = 'status' }) {
  return (
    <span class={`badge ${kind}-${value}`} data-value={value}>
      {label(value)}
    </span>
  );
}

export function Loading({ what }) {
  return <p class="muted">Loading {what}…</p>;
}

/**
 * A button that runs `action`; while it runs it is disabled, and a refusal is shown beside it
 * (through `onError`, or inline).
 */
/** A Delete button for the object at `path` (below /api/v1); `onDone` reloads the list. */
export function DeleteButton({ path, onDone, onError, testid }) {
  return (
    <ActionButton action={() => del(path)} onDone={onDone} onError={onError} testid={testid} class="danger">
      Delete
    </ActionButton>
  );
}

export function ActionButton({ action, children, onError, onDone, testid, class: cls, disabled, title }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const run = async () => {
    setBusy(true);
    setError(null);
    onError && onError(null);
    try {
      const answer = await action();
      onDone && onDone(answer);
    } catch (e) {
      if (onError) onError(e);
      else setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <span class="action">
      <button type="button" class={cls} onClick={run} disabled={busy || disabled} data-testid={testid} title={title}>
        {busy ? '…' : children}
      </button>
      {!onError && <ErrorBox error={error} testid={testid ? `${testid}-error` : 'error'} />}
    </span>
  );
}

/**
 * A modal form: `fields` render the inputs; `submit(form)` does the work and may throw an
 * ApiError, shown in the dialog; closes on success.
 */
export function Dialog({ title, onClose, submit, children, submitLabel = 'OK', testid = 'dialog' }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const onSubmit = async (ev) => {
    ev.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await submit(new FormData(ev.currentTarget));
      onClose();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  useEffect(() => {
    const esc = (e) => e.key === 'Escape' && onClose();
    addEventListener('keydown', esc);
    return () => removeEventListener('keydown', esc);
  }, [onClose]);
  return (
    <div class="modal-backdrop">
      <form class="modal" onSubmit={onSubmit} data-testid={testid}>
        <h3>{title}</h3>
        {children}
        <ErrorBox error={error} testid={`${testid}-error`} />
        <div class="buttons">
          <button type="submit" class="primary" disabled={busy} data-testid={`${testid}-submit`}>
            {busy ? '…' : submitLabel}
          </button>
          <button type="button" onClick={onClose}>
            Cancel
          </button>
        </div>
      </form>
    </div>
  );
}

export function Field({ label: text, children }) {
  return (
    <label class="field">
      <span>{text}</span>
      {children}
    </label>
  );
}

/** A horizontal bar for a fraction 0..1 (host load, memory use). */
export function Meter({ value, title }) {
  const pct = Math.max(0, Math.min(100, Math.round((value || 0) * 100)));
  return (
    <span class="meter" title={title || `${pct}%`}>
      <span style={{ width: `${pct}%` }} class={pct > 85 ? 'hot' : pct > 60 ? 'warm' : ''} />
    </span>
  );
}
