// The "New VM" form: a CreateVmRequest (POST /api/v1/vms), then, when asked, a start. A VM
// that was made but could not start is still shown, with the refusal.
import { useState } from 'preact/hooks';
import { get, post, seg } from '../api.js';
import { href, navigate } from '../router.js';
import { ErrorBox, Field, useResource } from '../ui.jsx';

/** A library list, or nothing when the cluster or the user has none. */
function useLibrary(path, key) {
  const res = useResource(() => get(path).catch(() => ({ [key]: [] })), []);
  return res.data?.[key] || [];
}

export function VmNew() {
  const templates = useLibrary('/templates', 'templates');
  const offerings = useLibrary('/offerings', 'offerings');
  const isos = useLibrary('/isos', 'isos');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [fromLibrary, setFromLibrary] = useState({ template: '', offering: '' });

  const submit = async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.currentTarget);
    const name = String(f.get('name')).trim();
    const disk = Number(f.get('disk_mib') || 0);
    const network = String(f.get('network') || '').trim();
    const body = {
      name,
      memory_mib: Number(f.get('memory_mib') || 0),
      vcpus: Number(f.get('vcpus') || 0),
      description: String(f.get('description') || ''),
      ha: f.get('ha') === 'on',
      disks_mib: disk > 0 ? [disk] : [],
      nics: network ? [network] : [],
    };
    for (const k of ['template', 'offering', 'iso']) {
      const v = String(f.get(k) || '');
      if (v) body[k] = v;
    }
    setBusy(true);
    setError(null);
    try {
      await post('/vms', body);
    } catch (e) {
      setError(e);
      setBusy(false);
      return;
    }
    let startError = null;
    if (f.get('start') === 'on') {
      try {
        await post(`/vms/${seg(name)}/start`, {});
      } catch (e) {
        startError = e.message;
      }
    }
    setBusy(false);
    if (startError) sessionStorage.setItem('corral.flash', `The VM was created but did not start: ${startError}`);
    navigate(f.get('start') === 'on' && !startError ? '/vms' : `/vms/${encodeURIComponent(name)}`);
  };

  const sized = fromLibrary.template || fromLibrary.offering;
  return (
    <div data-testid="vm-new-page">
      <h1>New virtual machine</h1>
      <form class="form" onSubmit={submit} data-testid="vm-new-form">
        <Field label="Name">
          <input name="name" required data-testid="new-vm-name" />
        </Field>
        <Field label={`Memory (MiB)${sized ? ', 0: the template’s or offering’s' : ''}`}>
          <input name="memory_mib" type="number" min="0" defaultValue={sized ? '0' : '1024'} data-testid="new-vm-memory" />
        </Field>
        <Field label="vCPUs">
          <input name="vcpus" type="number" min="0" defaultValue={sized ? '0' : '1'} data-testid="new-vm-vcpus" />
        </Field>
        <Field label="Disk size (MiB), 0: none">
          <input name="disk_mib" type="number" min="0" defaultValue="0" data-testid="new-vm-disk" />
        </Field>
        <Field label="Network (a NIC on this libvirt network), empty: none">
          <input name="network" data-testid="new-vm-network" />
        </Field>
        <Field label="Description">
          <input name="description" data-testid="new-vm-description" />
        </Field>
        {templates.length > 0 && (
          <Field label="Template">
            <select
              name="template"
              data-testid="new-vm-template"
              onChange={(e) => setFromLibrary({ ...fromLibrary, template: e.currentTarget.value })}
            >
              <option value="">none</option>
              {templates.map((t) => (
                <option key={t.id} value={t.name}>
                  {t.name}
                </option>
              ))}
            </select>
          </Field>
        )}
        {offerings.length > 0 && (
          <Field label="Offering">
            <select
              name="offering"
              data-testid="new-vm-offering"
              onChange={(e) => setFromLibrary({ ...fromLibrary, offering: e.currentTarget.value })}
            >
              <option value="">none</option>
              {offerings.map((o) => (
                <option key={o.id} value={o.name}>
                  {o.name} ({o.vcpus} vCPUs, {o.memory_mib} MiB)
                </option>
              ))}
            </select>
          </Field>
        )}
        {isos.length > 0 && (
          <Field label="ISO in the CD-ROM drive">
            <select name="iso" data-testid="new-vm-iso">
              <option value="">none</option>
              {isos.map((i) => (
                <option key={i.id} value={i.name}>
                  {i.name}
                </option>
              ))}
            </select>
          </Field>
        )}
        <label class="check">
          <input type="checkbox" name="ha" data-testid="new-vm-ha" /> Highly available
        </label>
        <label class="check">
          <input type="checkbox" name="start" data-testid="new-vm-start" /> Start after create
        </label>
        <ErrorBox error={error} testid="new-vm-error" />
        <div class="buttons">
          <button type="submit" class="primary" disabled={busy} data-testid="new-vm-submit">
            {busy ? 'Creating…' : 'Create'}
          </button>
          <a class="button" href={href('/vms')}>
            Cancel
          </a>
        </div>
      </form>
    </div>
  );
}
