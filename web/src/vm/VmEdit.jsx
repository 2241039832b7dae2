// Editing a VM (PATCH /api/v1/vms/{vm}): only the fields that changed are sent, with the
// now / next-run choice; what the server decided beside the request (a hot-plug that waits for
// the next run, a migration to make room) comes back as `notes` and is shown.
import { useState } from 'preact/hooks';
import { patch, seg } from '../api.js';
import { word } from '../format.js';
import { ErrorBox, Field, Notes } from '../ui.jsx';

const POLICIES = ['allow', 'manual', 'none'];
const PRIORITIES = ['low', 'medium', 'high'];

export function VmEdit({ vm, onDone }) {
  const [error, setError] = useState(null);
  const [notes, setNotes] = useState(null);
  const [busy, setBusy] = useState(false);
  const [saved, setSaved] = useState(false);
  const priority = word(vm.ha?.priority_enum, 'HA_PRIORITY_', vm.ha?.priority) || 'medium';
  const policy = word(vm.migration_policy_enum, 'MIGRATION_POLICY_', vm.migration_policy) || 'allow';

  const submit = async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.currentTarget);
    const body = {};
    const num = (k, old) => {
      const raw = String(f.get(k) ?? '').trim();
      if (raw !== '' && Number(raw) !== Number(old ?? -1)) body[k] = Number(raw);
    };
    const str = (k, old) => {
      const v = String(f.get(k) ?? '');
      if (v !== (old || '')) body[k] = v;
    };
    num('memory_mib', vm.memory_mib);
    num('vcpus', vm.vcpus);
    num('max_memory_mib', vm.max_memory_mib);
    num('max_vcpus', vm.max_vcpus);
    str('description', vm.description);
    str('comment', vm.comment);
    str('os', vm.os);
    const ha = f.get('ha') === 'on';
    if (ha !== !!vm.ha?.enabled) body.ha = ha;
    if (f.get('ha_priority') !== priority) body.ha_priority = String(f.get('ha_priority'));
    if (f.get('migration_policy') !== policy) body.migration_policy = String(f.get('migration_policy'));
    const protect = f.get('delete_protected') === 'on';
    if (protect !== !!vm.delete_protected) body.delete_protected = protect;
    body.next_run = f.get('when') === 'next_run';

    setBusy(true);
    setError(null);
    setNotes(null);
    setSaved(false);
    try {
      const answer = await patch(`/vms/${seg(vm.name)}`, body);
      setNotes(answer.notes || []);
      setSaved(true);
      onDone({ notes: answer.notes });
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="form" onSubmit={submit} data-testid="vm-edit-form" key={vm.updated_unix_ms}>
      <Field label="Memory (MiB)">
        <input name="memory_mib" type="number" min="1" defaultValue={vm.memory_mib} data-testid="edit-memory" />
      </Field>
      <Field label="vCPUs">
        <input name="vcpus" type="number" min="1" defaultValue={vm.vcpus} data-testid="edit-vcpus" />
      </Field>
      <Field label="Max memory (MiB, hot-plug limit; next run)">
        <input name="max_memory_mib" type="number" min="0" defaultValue={vm.max_memory_mib ?? ''} />
      </Field>
      <Field label="Max vCPUs (hot-plug limit; next run)">
        <input name="max_vcpus" type="number" min="0" defaultValue={vm.max_vcpus ?? ''} />
      </Field>
      <Field label="Description">
        <input name="description" defaultValue={vm.description} data-testid="edit-description" />
      </Field>
      <Field label="Comment">
        <input name="comment" defaultValue={vm.comment} />
      </Field>
      <Field label="Guest OS (oVirt's name; next run)">
        <input name="os" defaultValue={vm.os} />
      </Field>
      <label class="check">
        <input type="checkbox" name="ha" defaultChecked={!!vm.ha?.enabled} data-testid="edit-ha" /> Highly available
      </label>
      <Field label="HA priority">
        <select name="ha_priority">
          {PRIORITIES.map((p) => (
            <option key={p} selected={p === priority}>{p}</option>
          ))}
        </select>
      </Field>
      <Field label="Migration">
        <select name="migration_policy">
          {POLICIES.map((p) => (
            <option key={p} selected={p === policy}>{p}</option>
          ))}
        </select>
      </Field>
      <label class="check">
        <input type="checkbox" name="delete_protected" defaultChecked={!!vm.delete_protected} /> Delete protected
      </label>
      <fieldset class="when">
        <legend>When</legend>
        <label class="check">
          <input type="radio" name="when" value="now" defaultChecked data-testid="edit-now" /> Now (hot-plug what can be;
          the rest waits for the next run)
        </label>
        <label class="check">
          <input type="radio" name="when" value="next_run" data-testid="edit-next-run" /> At the next run
        </label>
      </fieldset>
      <ErrorBox error={error} testid="edit-error" />
      {saved && (
        <p class="ok" data-testid="edit-saved">
          Saved.
        </p>
      )}
      <Notes notes={notes} testid="edit-notes" />
      <div class="buttons">
        <button type="submit" class="primary" disabled={busy} data-testid="edit-submit">
          {busy ? 'Saving…' : 'Save'}
        </button>
      </div>
    </form>
  );
}
