// A VM's snapshots: the list (newest first, "you are here" marked), create, preview then
// commit or undo, restore and delete. Work on the images runs after the answer, so the list
// polls while a job runs.
import { useState } from 'preact/hooks';
import { del, get, post, seg } from '../api.js';
import { mib, time } from '../format.js';
import { ActionButton, Dialog, ErrorBox, Field, Loading, Notes, useResource } from '../ui.jsx';

export function VmSnapshots({ vm, onDone }) {
  const path = `/vms/${seg(vm.name)}`;
  const list = useResource(() => get(`${path}/snapshots`), [vm.name], 2000);
  const [error, setError] = useState(null);
  const [notes, setNotes] = useState(null);
  const [creating, setCreating] = useState(false);
  const done = (answer) => {
    setNotes(answer?.notes || null);
    list.reload();
    onDone({});
  };
  const s = list.data;
  const snaps = [...(s?.snapshots || [])].sort((a, b) => Number(b.created_unix_ms) - Number(a.created_unix_ms));
  const act = (text, testid, action) => (
    <ActionButton action={action} onDone={done} onError={setError} testid={testid}>
      {text}
    </ActionButton>
  );

  return (
    <div data-testid="vm-snapshots">
      <div class="title-row">
        <h2>Snapshots</h2>
        <span>
          <button type="button" onClick={() => setCreating(true)} data-testid="snapshot-create">
            Take a snapshot
          </button>
          {s?.preview && act('Commit preview', 'snapshot-commit', () => post(`${path}/preview/commit`))}
          {s?.preview && act('Undo preview', 'snapshot-undo', () => post(`${path}/preview/undo`))}
        </span>
      </div>
      <ErrorBox error={error} testid="snapshot-error" />
      <ErrorBox error={list.error} />
      <Notes notes={notes} testid="snapshot-notes" />
      {s?.job && <p class="muted">Working on the images: {s.job}</p>}
      {s?.last_error && <p class="error">The last snapshot job failed: {s.last_error}</p>}
      {s?.preview && (
        <p data-testid="snapshot-preview">
          In preview: {s.preview}
          {s.preview_memory ? ', with memory' : ''}
          {s.preview_config ? ', with configuration' : ''}
          {(s.preview_disks || []).length ? `, disks ${s.preview_disks.join(', ')}` : ''}
        </p>
      )}
      {!s && !list.error && <Loading what="snapshots" />}
      {s && (
        <table class="list" data-testid="snapshot-table">
          <thead>
            <tr>
              <th>Id</th>
              <th>Description</th>
              <th>Taken</th>
              <th>Memory</th>
              <th>Disks</th>
              <th>Status</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {snaps.map((sn) => {
              const sp = `${path}/snapshots/${seg(sn.id)}`;
              return (
                <tr key={sn.id} data-testid="snapshot-row" data-id={sn.id}>
                  <td>
                    <code>{sn.id.slice(0, 8)}</code>
                    {sn.current && <span class="tag">you are here</span>}
                  </td>
                  <td>{sn.description}</td>
                  <td>{time(sn.created_unix_ms)}</td>
                  <td>{sn.memory ? mib(sn.memory_mib) : ''}</td>
                  <td>{(sn.disks || []).map((d) => d.name).join(', ')}</td>
                  <td>{sn.status}</td>
                  <td>
                    {act('Preview', 'snapshot-preview-btn', () => post(`${sp}/preview`, {}))}
                    {act('Restore', 'snapshot-restore', () => post(`${sp}/restore`, {}))}
                    {act('Delete', 'snapshot-delete', () => del(sp))}
                  </td>
                </tr>
              );
            })}
            {snaps.length === 0 && (
              <tr>
                <td colSpan="7" class="muted">
                  No snapshots.
                </td>
              </tr>
            )}
          </tbody>
        </table>
      )}
      {creating && (
        <Dialog
          title={`Snapshot of ${vm.name}`}
          testid="snapshot-dialog"
          submitLabel="Take"
          onClose={() => setCreating(false)}
          submit={async (f) =>
            done(
              await post(`${path}/snapshots`, {
                description: String(f.get('description') || ''),
                memory: f.get('memory') === 'on',
              }),
            )
          }
        >
          <Field label="Description">
            <input name="description" data-testid="snapshot-description" />
          </Field>
          <label class="check">
            <input type="checkbox" name="memory" /> With its memory (the guest pauses while it is saved)
          </label>
        </Dialog>
      )}
    </div>
  );
}
