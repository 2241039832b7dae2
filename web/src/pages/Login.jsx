// The login page: user and password for a session (POST /api/v1/login). The server's words
// are shown as they come, including why the last page sent us here.
import { useState } from 'preact/hooks';
import { login } from '../api.js';
import { ErrorBox, Field } from '../ui.jsx';

export function Login({ message, onLogin }) {
  const [error, setError] = useState(message ? { message } : null);
  const [busy, setBusy] = useState(false);
  const submit = async (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.currentTarget);
    setBusy(true);
    setError(null);
    try {
      await login(String(form.get('user')), String(form.get('password')));
      onLogin();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="login">
      <form onSubmit={submit} data-testid="login-form">
        <h1>Corral</h1>
        <Field label="User">
          <input name="user" autocomplete="username" required autofocus data-testid="login-user" />
        </Field>
        <Field label="Password">
          <input name="password" type="password" autocomplete="current-password" data-testid="login-password" />
        </Field>
        <ErrorBox error={error} testid="login-error" />
        <button type="submit" class="primary" disabled={busy} data-testid="login-submit">
          {busy ? 'Signing in…' : 'Log in'}
        </button>
      </form>
    </div>
  );
}
