// Permissions (a role given to a user or a group on an object), as one table and one "add"
// dialog shared by the permissions page and a VM's permissions tab.
import { useState } from 'preact/hooks';
import { del, get, post } from './api.js';
import { ActionButton, Dialog, ErrorBox, Field, Loading, useResource } from './ui.jsx';

/** `on`: fixed object ("vm:web1") or empty for every permission the user may see. */
export function PermissionPanel({ on = '' }) {
  const list = useResource(() => get('/permissions', { on }), [on]);
  const [error, setError] = useState(null);
  const [adding, setAdding] = useState(false);
  const [filter, setFilter] = useState('');
  const needle = filter.trim().toLowerCase();
  const all = list.data?.permissions || [];
  const perms = needle
    ? all.filter((p) => [p.user, p.group, p.role, p.on].some((f) => (f || '').toLowerCase().includes(needle)))
    : all;
  return (
    <div data-testid="permission-panel">
      <div class="title-row">
        <h2>Permissions{on ? ` on ${on}` : ''}</h2>
        <button type="button" onClick={() => setAdding(true)} data-testid="permission-add">
          Add permission
        </button>
      </div>
      {!on && (
        <div class="filters">
          <input
            placeholder="User, group, role or object contains…"
            value={filter}
            onInput={(e) => setFilter(e.currentTarget.value)}
            data-testid="permission-filter"
          />
          <span class="muted">{list.data ? `${perms.length} of ${all.length}` : ''}</span>
        </div>
      )}
      <ErrorBox error={error} testid="permission-error" />
      <ErrorBox error={list.error} />
      {!list.data && !list.error && <Loading what="permissions" />}
      {list.data && (
        <table class="list" data-testid="permission-table">
          <thead>
            <tr>
              <th>User or group</th>
              <th>Role</th>
              <th>On</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {perms.map((p) => (
              <tr key={`${p.user}|${p.group}|${p.role}|${p.on}`} data-testid="permission-row">
                <td>{p.user ? p.user : `group ${p.group}`}</td>
                <td>{p.role}</td>
                <td>{p.on}</td>
                <td>
                  <ActionButton
                    action={() => del('/permissions', { user: p.user, group: p.group, role: p.role, on: p.on })}
                    onDone={list.reload}
                    onError={setError}
                    testid="permission-remove"
                  >
                    Remove
                  </ActionButton>
                </td>
              </tr>
            ))}
            {perms.length === 0 && (
              <tr>
                <td colSpan="4" class="muted">
                  None.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
      {adding && <AddPermission on={on} onClose={() => setAdding(false)} onDone={list.reload} />}
    </div>
  );
}

function AddPermission({ on, onClose, onDone }) {
  const roles = useResource(() => get('/roles'), []);
  return (
    <Dialog
      title="Add a permission"
      testid="permission-dialog"
      submitLabel="Add"
      onClose={onClose}
      submit={async (f) => {
        const who = String(f.get('who')).trim();
        const body = { role: String(f.get('role')), on: on || String(f.get('on')).trim() };
        if (f.get('kind') === 'group') body.group = who;
        else body.user = who;
        await post('/permissions', body);
        onDone();
      }}
    >
      <Field label="To">
        <select name="kind" data-testid="permission-kind">
          <option value="user">user</option>
          <option value="group">group</option>
        </select>
      </Field>
      <Field label="Name">
        <input name="who" required data-testid="permission-who" />
      </Field>
      <Field label="Role">
        <select name="role" required data-testid="permission-role">
          {(roles.data?.roles || []).map((r) => (
            <option key={r.name} value={r.name}>
              {r.name}
            </option>
          ))}
        </select>
      </Field>
      <ErrorBox error={roles.error} />
      {!on && (
        <Field label="On (system, cluster, host:NAME, vm:NAME, disk:NAME)">
          <input name="on" required defaultValue="system" data-testid="permission-on" />
        </Field>
      )}
    </Dialog>
  );
}
