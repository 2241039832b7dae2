// A VM's disks, NICs and CD: add a new disk or attach a floating one, detach, plug and unplug;
// add, remove, plug and unplug NICs; insert or eject a CD. Each answer is the VM as it now is.
import { useState } from 'preact/hooks';
import { del, get, post, seg } from '../api.js';
import { mib, word } from '../format.js';
import { ActionButton, Dialog, ErrorBox, Field, useResource } from '../ui.jsx';

export function VmDevices({ vm, onDone }) {
  const [error, setError] = useState(null);
  const [dialog, setDialog] = useState(null);
  const path = `/vms/${seg(vm.name)}`;
  const act = (method, sub, body) => () => (method === 'DELETE' ? del(`${path}${sub}`) : post(`${path}${sub}`, body || {}));
  const button = (method, sub, text, testid) => (
    <ActionButton action={act(method, sub)} onDone={onDone} onError={setError} testid={testid}>
      {text}
    </ActionButton>
  );

  return (
    <div data-testid="vm-devices">
      <ErrorBox error={error} testid="devices-error" />
      <div class="title-row">
        <h2>Disks</h2>
        <span>
          <button type="button" onClick={() => setDialog('add-disk')} data-testid="disk-add">
            New disk
          </button>
          <button type="button" onClick={() => setDialog('attach-disk')} data-testid="disk-attach">
            Attach floating disk
          </button>
        </span>
      </div>
      <table class="list" data-testid="disk-table">
        <thead>
          <tr>
            <th>Name</th>
            <th>Size</th>
            <th>Format</th>
            <th>Interface</th>
            <th>State</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {(vm.disks || []).map((d) => {
            const a = d.attachment || {};
            const ds = `/disks/${seg(d.name)}`;
            return (
              <tr key={d.id} data-testid="disk-row" data-name={d.name}>
                <td>{d.name}</td>
                <td>{mib(d.size_mib)}</td>
                <td>{d.format}</td>
                <td>{word(a.interface_enum, 'DISK_INTERFACE_', a.interface)}</td>
                <td>
                  {a.plugged ? 'plugged' : 'unplugged'}
                  {a.bootable ? ', bootable' : ''}
                  {a.optional ? ', optional' : ''}
                </td>
                <td>
                  {a.plugged ? button('POST', `${ds}/unplug`, 'Unplug', 'disk-unplug') : button('POST', `${ds}/plug`, 'Plug', 'disk-plug')}
                  {button('DELETE', ds, 'Detach', 'disk-detach')}
                </td>
              </tr>
            );
          })}
          {(vm.disks || []).length === 0 && (
            <tr>
              <td colSpan="6" class="muted">
                No disks.
              </td>
            </tr>
          )}
        </tbody>
      </table>

      <div class="title-row">
        <h2>Network interfaces</h2>
        <button type="button" onClick={() => setDialog('add-nic')} data-testid="nic-add">
          New NIC
        </button>
      </div>
      <table class="list" data-testid="nic-table">
        <thead>
          <tr>
            <th>Name</th>
            <th>Network</th>
            <th>MAC</th>
            <th>State</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {(vm.nics || []).map((n) => {
            const ns = `/nics/${seg(n.name)}`;
            return (
              <tr key={n.name} data-testid="nic-row" data-name={n.name}>
                <td>{n.name}</td>
                <td>{n.network}</td>
                <td>
                  <code>{n.mac}</code>
                </td>
                <td>{n.plugged ? 'plugged' : 'unplugged'}</td>
                <td>
                  {n.plugged ? button('POST', `${ns}/unplug`, 'Unplug', 'nic-unplug') : button('POST', `${ns}/plug`, 'Plug', 'nic-plug')}
                  {button('DELETE', ns, 'Remove', 'nic-remove')}
                </td>
              </tr>
            );
          })}
          {(vm.nics || []).length === 0 && (
            <tr>
              <td colSpan="5" class="muted">
                No NICs.
              </td>
            </tr>
          )}
        </tbody>
      </table>

      <Cd vm={vm} onDone={onDone} onError={setError} />

      {dialog === 'add-disk' && (
        <Dialog
          title="New disk"
          testid="disk-add-dialog"
          submitLabel="Add"
          onClose={() => setDialog(null)}
          submit={async (f) =>
            onDone(
              await post(`${path}/disks`, {
                size_mib: Number(f.get('size_mib')),
                name: String(f.get('name') || ''),
                format: String(f.get('format') || ''),
                interface: String(f.get('interface')),
                bootable: f.get('bootable') === 'on',
                optional: f.get('optional') === 'on',
              }),
            )
          }
        >
          <Field label="Size (MiB)">
            <input name="size_mib" type="number" min="1" required defaultValue="1024" data-testid="disk-size" />
          </Field>
          <Field label="Name (empty: VM-diskN)">
            <input name="name" />
          </Field>
          <Field label="Format">
            <select name="format">
              <option value="">qcow2</option>
              <option value="raw">raw</option>
            </select>
          </Field>
          <InterfaceField />
          <label class="check">
            <input type="checkbox" name="bootable" /> Bootable
          </label>
          <label class="check">
            <input type="checkbox" name="optional" /> Optional (the VM starts without it when its image is gone)
          </label>
        </Dialog>
      )}
      {dialog === 'attach-disk' && <AttachDisk vm={vm} onClose={() => setDialog(null)} onDone={onDone} />}
      {dialog === 'add-nic' && (
        <Dialog
          title="New NIC"
          testid="nic-add-dialog"
          submitLabel="Add"
          onClose={() => setDialog(null)}
          submit={async (f) =>
            onDone(await post(`${path}/nics`, { network: String(f.get('network')), mac: String(f.get('mac') || '') }))
          }
        >
          <Field label="libvirt network">
            <input name="network" required defaultValue="default" data-testid="nic-network" />
          </Field>
          <Field label="MAC (empty: a random one in 52:54:00)">
            <input name="mac" />
          </Field>
        </Dialog>
      )}
    </div>
  );
}

function InterfaceField() {
  return (
    <Field label="Interface">
      <select name="interface">
        <option value="DISK_INTERFACE_VIRTIO">virtio</option>
        <option value="DISK_INTERFACE_SCSI">scsi (virtio-scsi)</option>
      </select>
    </Field>
  );
}

function AttachDisk({ vm, onClose, onDone }) {
  const disks = useResource(() => get('/disks'), []);
  const floating = (disks.data?.disks || []).filter((d) => !d.vm);
  return (
    <Dialog
      title="Attach a floating disk"
      testid="disk-attach-dialog"
      submitLabel="Attach"
      onClose={onClose}
      submit={async (f) =>
        onDone(
          await post(`/vms/${seg(vm.name)}/disks/attach`, {
            disk: String(f.get('disk')),
            interface: String(f.get('interface')),
            bootable: f.get('bootable') === 'on',
            unplugged: f.get('unplugged') === 'on',
          }),
        )
      }
    >
      <ErrorBox error={disks.error} />
      <Field label="Disk">
        <select name="disk" required>
          {floating.map((d) => (
            <option key={d.id} value={d.name}>
              {d.name} ({mib(d.size_mib)})
            </option>
          ))}
        </select>
      </Field>
      {disks.data && floating.length === 0 && <p class="muted">No floating disks.</p>}
      <InterfaceField />
      <label class="check">
        <input type="checkbox" name="bootable" /> Bootable
      </label>
      <label class="check">
        <input type="checkbox" name="unplugged" /> Attach unplugged
      </label>
    </Dialog>
  );
}

/** The CD-ROM drive: an ISO of the library (or a path in the storage domain) in, or out. */
function Cd({ vm, onDone, onError }) {
  const isos = useResource(() => get('/isos').catch(() => ({ isos: [] })), []);
  const [iso, setIso] = useState('');
  const [nextRun, setNextRun] = useState(false);
  const path = `/vms/${seg(vm.name)}/cd`;
  const inDrive = vm.iso || vm.cdrom || '';
  return (
    <div data-testid="vm-cd">
      <h2>CD-ROM</h2>
      <p>
        {inDrive ? <>In the drive: {inDrive}</> : 'The drive is empty.'}
        {vm.next_run?.cdrom !== undefined && ` At the next run: ${vm.next_run.cdrom}.`}
        {vm.next_run?.cdrom_ejected && ' Ejected at the next run.'}
      </p>
      <div class="filters">
        <input
          list="cd-isos"
          placeholder="ISO name or path"
          value={iso}
          onInput={(e) => setIso(e.currentTarget.value)}
          data-testid="cd-iso"
        />
        <datalist id="cd-isos">
          {(isos.data?.isos || []).map((i) => (
            <option key={i.id} value={i.name} />
          ))}
        </datalist>
        <label class="check">
          <input type="checkbox" checked={nextRun} onChange={(e) => setNextRun(e.currentTarget.checked)} /> at the next run
        </label>
        <ActionButton
          action={() => post(path, { iso, next_run: nextRun })}
          onDone={onDone}
          onError={onError}
          testid="cd-insert"
          disabled={!iso}
        >
          Insert
        </ActionButton>
        <ActionButton
          action={() => post(path, { eject: true, next_run: nextRun })}
          onDone={onDone}
          onError={onError}
          testid="cd-eject"
          disabled={!inDrive}
        >
          Eject
        </ActionButton>
      </div>
    </div>
  );
}
