// Hosts: the list, and one host's page with maintenance (a reason asked; the VMs that keep it
// from entering maintenance shown with why), activation, and the VMs it runs.
import { useState } from 'preact/hooks';
import { get, post, seg } from '../api.js';
import { href } from '../router.js';
import { hostState, mib, time, vmStatus, word } from '../format.js';
import { ActionButton, Badge, Dialog, ErrorBox, Field, Loading, Meter, useResource } from '../ui.jsx';

export function HostList() {
  const hosts = useResource(() => get('/hosts'), [], 3000);
  const list = hosts.data?.hosts || [];
  return (
    <div data-testid="host-list-page">
      <h1>Hosts</h1>
      <ErrorBox error={hosts.error} />
      {!hosts.data && !hosts.error && <Loading what="hosts" />}
      {hosts.data && (
        <table class="list" data-testid="host-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>State</th>
              <th>Address</th>
              <th>VMs</th>
              <th>Memory used</th>
              <th>vCPUs free</th>
              <th>Engine score</th>
              <th>Tags</th>
            </tr>
          </thead>
          <tbody>
            {list.map((h) => (
              <tr key={h.id} data-testid="host-row" data-name={h.name} data-state={hostState(h)}>
                <td>
                  <a href={href(`/hosts/${encodeURIComponent(h.name)}`)} data-testid="host-link">
                    {h.name}
                  </a>
                </td>
                <td>
                  <Badge value={hostState(h)} />
                </td>
                <td>{h.address}</td>
                <td>{h.vms_running}</td>
                <td>
                  <Meter
                    value={h.memory_mib ? (h.memory_mib - h.memory_free_mib) / h.memory_mib : 0}
                    title={`${mib(h.memory_mib - h.memory_free_mib)} of ${mib(h.memory_mib)}`}
                  />
                </td>
                <td>
                  {h.vcpus_free} ({h.cpus} CPUs)
                </td>
                <td>{h.engine_score ? h.engine_score.score : '—'}</td>
                <td>{(h.tags || []).join(', ')}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

export function HostPage({ host: name }) {
  const host = useResource(() => get(`/hosts/${seg(name)}`), [name], 2000);
  const vms = useResource(() => get('/vms'), [name], 5000);
  const [answer, setAnswer] = useState(null);
  const [error, setError] = useState(null);
  const [asking, setAsking] = useState(false);
  const h = answer && !host.data ? answer : host.data;
  if (!h) {
    return (
      <div data-testid="host-page">
        <h1>{name}</h1>
        <ErrorBox error={host.error} />
        {!host.error && <Loading what="the host" />}
      </div>
    );
  }
  const state = hostState(h);
  const mine = (vms.data?.vms || []).filter((v) => v.host === h.name || v.migrating_to === h.name);
  const blocked = h.blocked || [];
  const done = (a) => {
    setAnswer(a);
    host.reload();
    vms.reload();
  };
  return (
    <div data-testid="host-page" data-name={h.name} data-state={state}>
      <div class="title-row">
        <h1>
          {h.name} <Badge value={state} />
        </h1>
      </div>
      <div class="actions">
        <button
          type="button"
          onClick={() => setAsking(true)}
          disabled={state === 'maintenance' || state === 'preparing_for_maintenance'}
          data-testid="host-maintenance"
        >
          Maintenance
        </button>
        <ActionButton
          action={() => post(`/hosts/${seg(h.name)}/activate`, {})}
          onDone={done}
          onError={setError}
          testid="host-activate"
          disabled={state !== 'maintenance' && state !== 'preparing_for_maintenance'}
        >
          Activate
        </ActionButton>
      </div>
      <ErrorBox error={error} testid="host-error" />
      {blocked.length > 0 && (
        <div class="card warn" data-testid="host-blocked">
          <b>These VMs keep {h.name} from entering maintenance:</b>
          <ul>
            {blocked.map((b) => (
              <li key={b.vm}>
                <a href={href(`/vms/${encodeURIComponent(b.vm)}`)}>{b.vm}</a>: {b.reason}
              </li>
            ))}
          </ul>
        </div>
      )}
      <table class="details" data-testid="host-details">
        <tbody>
          <tr>
            <th>Address</th>
            <td>{h.address}</td>
          </tr>
          <tr>
            <th>State since</th>
            <td>{time(h.state_since_unix_ms)}</td>
          </tr>
          {h.maintenance_reason && (
            <tr>
              <th>Maintenance reason</th>
              <td>{h.maintenance_reason}</td>
            </tr>
          )}
          <tr>
            <th>CPUs</th>
            <td>
              {h.cpus} ({h.vcpus_free} vCPUs free)
            </td>
          </tr>
          <tr>
            <th>Memory</th>
            <td>
              {mib(h.memory_mib)} ({mib(h.memory_free_mib)} free)
            </td>
          </tr>
          <tr>
            <th>Hypervisor</th>
            <td>
              {h.libvirt_uri} ({word(h.domain_type_enum, 'DOMAIN_TYPE_', h.domain_type)})
            </td>
          </tr>
          <tr>
            <th>Engine score</th>
            <td>
              {h.engine_score ? h.engine_score.score : '—'}
              {(h.engine_score?.penalties || []).map((p) => (
                <div key={p} class="muted">
                  {p}
                </div>
              ))}
              {h.engine_local_maintenance && <div>local maintenance</div>}
            </td>
          </tr>
          <tr>
            <th>Tags</th>
            <td>{(h.tags || []).join(', ')}</td>
          </tr>
          <tr>
            <th>Joined</th>
            <td>{time(h.joined_unix_ms)}</td>
          </tr>
        </tbody>
      </table>
      <h2>VMs on {h.name}</h2>
      <ErrorBox error={vms.error} />
      <table class="list" data-testid="host-vms">
        <thead>
          <tr>
            <th>Name</th>
            <th>Status</th>
            <th>Memory</th>
            <th>vCPUs</th>
          </tr>
        </thead>
        <tbody>
          {mine.map((v) => (
            <tr key={v.id} data-testid="host-vm-row" data-name={v.name}>
              <td>
                <a href={href(`/vms/${encodeURIComponent(v.name)}`)}>{v.name}</a>
                {v.migrating_to === h.name && <span class="tag">arriving</span>}
              </td>
              <td>
                <Badge value={vmStatus(v)} />
              </td>
              <td>{mib(v.memory_mib)}</td>
              <td>{v.vcpus}</td>
            </tr>
          ))}
          {vms.data && mine.length === 0 && (
            <tr>
              <td colSpan="4" class="muted">
                None.
              </td>
            </tr>
          )}
        </tbody>
      </table>
      {asking && (
        <Dialog
          title={`Maintenance of ${h.name}`}
          testid="maintenance-dialog"
          submitLabel="Start maintenance"
          onClose={() => setAsking(false)}
          submit={async (f) => done(await post(`/hosts/${seg(h.name)}/maintenance`, { reason: String(f.get('reason') || '') }))}
        >
          <p>Every VM is migrated away, highest priority first; then the host takes no VMs.</p>
          <Field label="Reason">
            <input name="reason" data-testid="maintenance-reason" />
          </Field>
        </Dialog>
      )}
    </div>
  );
}
