// Local users and groups: list, create, delete; a group's members.
import { useState } from 'preact/hooks';
import { get, post, seg } from '../api.js';
import { time } from '../format.js';
import { DeleteButton, Dialog, ErrorBox, Field, Loading, useResource } from '../ui.jsx';

export function Users() {
  const users = useResource(() => get('/users'), []);
  const groups = useResource(() => get('/groups'), []);
  const [error, setError] = useState(null);
  const [dialog, setDialog] = useState(null);
  return (
    <div data-testid="users-page">
      <div class="title-row">
        <h1>Users</h1>
        <button type="button" onClick={() => setDialog('user')} data-testid="user-create">
          New user
        </button>
      </div>
      <ErrorBox error={error} testid="users-error" />
      <ErrorBox error={users.error} />
      {!users.data && !users.error && <Loading what="users" />}
      {users.data && (
        <table class="list" data-testid="user-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Groups</th>
              <th>Permissions</th>
              <th>Password</th>
              <th>Sessions</th>
              <th>API tokens</th>
              <th>Created</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {(users.data.users || []).map((u) => (
              <tr key={u.name} data-testid="user-row" data-name={u.name}>
                <td>{u.name}</td>
                <td>{(u.groups || []).join(', ')}</td>
                <td>
                  {(u.permissions || []).map((p) => (
                    <div key={`${p.role}@${p.on}`}>
                      {p.role} on {p.on}
                    </div>
                  ))}
                </td>
                <td>{u.has_password ? 'yes' : 'no'}</td>
                <td>{u.sessions}</td>
                <td>{u.api_tokens}</td>
                <td>{time(u.created_unix_ms)}</td>
                <td>
                  <DeleteButton path={`/users/${seg(u.name)}`} onDone={users.reload} onError={setError} testid="user-delete" />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}

      <div class="title-row">
        <h2>Groups</h2>
        <button type="button" onClick={() => setDialog('group')} data-testid="group-create">
          New group
        </button>
      </div>
      {groups.error?.message !== users.error?.message && <ErrorBox error={groups.error} />}
      {groups.data && (
        <table class="list" data-testid="group-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Members</th>
              <th>Permissions</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {(groups.data.groups || []).map((g) => (
              <tr key={g.name} data-testid="group-row" data-name={g.name}>
                <td>{g.name}</td>
                <td>{(g.users || []).join(', ')}</td>
                <td>
                  {(g.permissions || []).map((p) => (
                    <div key={`${p.role}@${p.on}`}>
                      {p.role} on {p.on}
                    </div>
                  ))}
                </td>
                <td>
                  <DeleteButton path={`/groups/${seg(g.name)}`} onDone={groups.reload} onError={setError} testid="group-delete" />
                </td>
              </tr>
            ))}
            {(groups.data.groups || []).length === 0 && (
              <tr>
                <td colSpan="4" class="muted">
                  No groups.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
      {dialog === 'user' && (
        <Dialog
          title="New user"
          testid="user-dialog"
          submitLabel="Create"
          onClose={() => setDialog(null)}
          submit={async (f) => {
            await post('/users', { name: String(f.get('name')).trim(), password: String(f.get('password') || '') });
            users.reload();
          }}
        >
          <Field label="Name">
            <input name="name" required data-testid="user-name" />
          </Field>
          <Field label="Password (empty: none; a certificate or API token still works)">
            <input name="password" type="password" autocomplete="new-password" data-testid="user-password" />
          </Field>
        </Dialog>
      )}
      {dialog === 'group' && (
        <Dialog
          title="New group"
          testid="group-dialog"
          submitLabel="Create"
          onClose={() => setDialog(null)}
          submit={async (f) => {
            const users = String(f.get('users') || '')
              .split(',')
              .map((s) => s.trim())
              .filter(Boolean);
            await post('/groups', { name: String(f.get('name')).trim(), users });
            groups.reload();
          }}
        >
          <Field label="Name">
            <input name="name" required data-testid="group-name" />
          </Field>
          <Field label="Members (comma-separated user names)">
            <input name="users" />
          </Field>
        </Dialog>
      )}
    </div>
  );
}
