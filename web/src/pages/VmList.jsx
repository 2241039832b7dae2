// The VM list: filters by name, status and host, the next-run marker (a configuration waiting
// for the next start), and the way to a new VM. The server lists only the VMs the user may see.
import { useMemo, useState } from 'preact/hooks';
import { get } from '../api.js';
import { href } from '../router.js';
import { label, mib, VM_STATUSES, vmStatus } from '../format.js';
import { Badge, ErrorBox, Loading, useResource } from '../ui.jsx';

// Rows drawn at first: enough to scroll, few enough that a list of thousands opens at once.
const PAGE = 200;

function hashQuery() {
  const q = location.hash.split('?')[1] || '';
  return new URLSearchParams(q);
}

export function VmList() {
  const q = hashQuery();
  const [name, setName] = useState(q.get('name') || '');
  const [status, setStatus] = useState(q.get('status') || '');
  const [host, setHost] = useState(q.get('host') || '');
  const [limit, setLimit] = useState(PAGE);
  const vms = useResource(() => get('/vms'), [], 3000);

  const list = vms.data?.vms || [];
  const hosts = useMemo(() => [...new Set(list.map((v) => v.host).filter(Boolean))].sort(), [list]);
  const shown = useMemo(() => {
    const needle = name.trim().toLowerCase();
    return list
      .filter((v) => !needle || v.name.toLowerCase().includes(needle))
      .filter((v) => !status || vmStatus(v) === status)
      .filter((v) => !host || (host === '-' ? !v.host : v.host === host))
      .sort((a, b) => a.name.localeCompare(b.name));
  }, [list, name, status, host]);

  return (
    <div data-testid="vm-list-page">
      <div class="title-row">
        <h1>Virtual machines</h1>
        <a class="button primary" href={href('/new-vm')} data-testid="new-vm">
          New VM
        </a>
      </div>
      <div class="filters">
        <input
          placeholder="Name contains…"
          value={name}
          onInput={(e) => setName(e.currentTarget.value)}
          data-testid="filter-name"
        />
        <select value={status} onChange={(e) => setStatus(e.currentTarget.value)} data-testid="filter-status">
          <option value="">any status</option>
          {VM_STATUSES.map((s) => (
            <option key={s} value={s}>
              {label(s)}
            </option>
          ))}
        </select>
        <select value={host} onChange={(e) => setHost(e.currentTarget.value)} data-testid="filter-host">
          <option value="">any host</option>
          <option value="-">no host</option>
          {hosts.map((h) => (
            <option key={h} value={h}>
              {h}
            </option>
          ))}
        </select>
        <span class="muted" data-testid="vm-list-count">
          {vms.data ? `${shown.length} of ${list.length}` : ''}
        </span>
      </div>
      <ErrorBox error={vms.error} />
      {!vms.data && !vms.error && <Loading what="VMs" />}
      {vms.data && (
        <table class="list" data-testid="vm-table" data-ready="true">
          <thead>
            <tr>
              <th>Name</th>
              <th>Status</th>
              <th>Host</th>
              <th>Memory</th>
              <th>vCPUs</th>
              <th>HA</th>
              <th title="A configuration waits for the next run">Next run</th>
              <th>Description</th>
            </tr>
          </thead>
          <tbody>
            {shown.slice(0, limit).map((v) => (
              <VmRow key={v.id || v.name} vm={v} />
            ))}
          </tbody>
        </table>
      )}
      {shown.length > limit && (
        <button type="button" onClick={() => setLimit(shown.length)} data-testid="show-all">
          Show all {shown.length}
        </button>
      )}
    </div>
  );
}

function VmRow({ vm }) {
  const s = vmStatus(vm);
  return (
    <tr data-testid="vm-row" data-name={vm.name} data-status={s}>
      <td>
        <a href={href(`/vms/${encodeURIComponent(vm.name)}`)} data-testid="vm-link">
          {vm.name}
        </a>
        {vm.hosted_engine && <span class="tag">engine</span>}
      </td>
      <td>
        <Badge value={s} />
        {vm.migration && <span class="tag">migrating{vm.migration.progress ? ` ${vm.migration.progress.percent}%` : ''}</span>}
        {vm.hot_error && (
          <span class="tag error-tag" title={vm.hot_error}>
            !
          </span>
        )}
      </td>
      <td>{vm.host || ''}</td>
      <td>{mib(vm.memory_mib)}</td>
      <td>{vm.vcpus}</td>
      <td>{vm.ha?.enabled ? vm.ha.priority || 'on' : ''}</td>
      <td>
        {vm.pending_next_run && (
          <span class="pending" title="Changes wait for the next run" data-testid="pending-next-run">
            *
          </span>
        )}
      </td>
      <td class="muted">{vm.description}</td>
    </tr>
  );
}
