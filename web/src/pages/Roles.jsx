// Roles: the predefined ones (oVirt's) and custom ones, with the permission words each holds.
import { useState } from 'preact/hooks';
import { get, post, seg } from '../api.js';
import { DeleteButton, Dialog, ErrorBox, Field, Loading, useResource } from '../ui.jsx';

export function Roles() {
  const roles = useResource(() => get('/roles'), []);
  const [error, setError] = useState(null);
  const [creating, setCreating] = useState(false);
  return (
    <div data-testid="roles-page">
      <div class="title-row">
        <h1>Roles</h1>
        <button type="button" onClick={() => setCreating(true)} data-testid="role-create">
          New role
        </button>
      </div>
      <ErrorBox error={error} testid="roles-error" />
      <ErrorBox error={roles.error} />
      {!roles.data && !roles.error && <Loading what="roles" />}
      {roles.data && (
        <table class="list" data-testid="role-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Description</th>
              <th>Permissions</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {(roles.data.roles || []).map((r) => (
              <tr key={r.name} data-testid="role-row" data-name={r.name}>
                <td>
                  {r.name}
                  {r.predefined && <span class="tag">predefined</span>}
                </td>
                <td>{r.description}</td>
                <td class="words">{(r.permissions || []).join(' ')}</td>
                <td>
                  {!r.predefined && (
                    <DeleteButton path={`/roles/${seg(r.name)}`} onDone={roles.reload} onError={setError} testid="role-delete" />
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {creating && (
        <Dialog
          title="New role"
          testid="role-dialog"
          submitLabel="Create"
          onClose={() => setCreating(false)}
          submit={async (f) => {
            const permissions = String(f.get('permissions') || '')
              .split(/[\s,]+/)
              .filter(Boolean);
            await post('/roles', { name: String(f.get('name')).trim(), permissions });
            roles.reload();
          }}
        >
          <Field label="Name">
            <input name="name" required data-testid="role-name" />
          </Field>
          <Field label="Permission words (vm.power vm.console …)">
            <input name="permissions" data-testid="role-permissions" />
          </Field>
        </Dialog>
      )}
    </div>
  );
}
