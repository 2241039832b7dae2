// The dashboard: hosts (state, load, engine score), VMs counted by status, the hosted engine,
// and what needs attention. One GET of each list and no per-VM request, so it stays fast with
// thousands of VMs; it refreshes every few seconds.
import { get } from '../api.js';
import { href } from '../router.js';
import { ago, eventLevel, hostState, label, mib, VM_STATUSES, vmStatus, word } from '../format.js';
import { Badge, ErrorBox, Loading, Meter, useResource } from '../ui.jsx';

const REFRESH_MS = 5000;

export function Dashboard() {
  const vms = useResource(() => get('/vms'), [], REFRESH_MS);
  const hosts = useResource(() => get('/hosts'), [], REFRESH_MS);
  const engine = useResource(() => get('/engine'), [], REFRESH_MS);
  const events = useResource(() => get('/events', { limit: 200 }), [], REFRESH_MS);

  return (
    <div class="dashboard" data-testid="dashboard">
      <h1>Dashboard</h1>
      <VmCounts res={vms} />
      <div class="columns">
        <section class="card">
          <h2>
            <a href={href('/hosts')}>Hosts</a>
          </h2>
          {hosts.error?.status === 403 ? (
            // A user without host.view: what the server says, not an alarm.
            <p class="muted" data-testid="hosts-hidden">
              {hosts.error.message}
            </p>
          ) : (
            <ErrorBox error={hosts.error} />
          )}
          {hosts.data ? <HostTable hosts={hosts.data.hosts || []} /> : !hosts.error && <Loading what="hosts" />}
        </section>
        <section class="card">
          <h2>Hosted engine</h2>
          <Engine res={engine} />
        </section>
      </div>
      <section class="card">
        <h2>Alerts</h2>
        <Alerts hosts={hosts.data} vms={vms.data} events={events.data} />
      </section>
    </div>
  );
}

function VmCounts({ res }) {
  if (res.error && !res.data) return <ErrorBox error={res.error} />;
  if (!res.data) {
    return (
      <div class="tiles" data-testid="vm-counts" data-ready="false">
        <Loading what="VMs" />
      </div>
    );
  }
  const list = res.data.vms || [];
  const counts = {};
  for (const vm of list) {
    const s = vmStatus(vm);
    counts[s] = (counts[s] || 0) + 1;
  }
  const shown = VM_STATUSES.filter((s) => counts[s] || s === 'up' || s === 'down');
  return (
    <div class="tiles" data-testid="vm-counts" data-ready="true" data-total={list.length}>
      <a class="tile" href={href('/vms')} data-testid="vm-count-total">
        <b>{list.length}</b>
        <span>VMs</span>
      </a>
      {shown.map((s) => (
        <a key={s} class={`tile status-${s}`} href={href(`/vms?status=${s}`)} data-testid={`vm-count-${s}`}>
          <b>{counts[s] || 0}</b>
          <span>{label(s)}</span>
        </a>
      ))}
    </div>
  );
}

function HostTable({ hosts }) {
  if (hosts.length === 0) return <p class="muted">No hosts.</p>;
  return (
    <table data-testid="dashboard-hosts">
      <thead>
        <tr>
          <th>Host</th>
          <th>State</th>
          <th>VMs</th>
          <th>Memory used</th>
          <th>vCPUs free</th>
          <th>Engine score</th>
        </tr>
      </thead>
      <tbody>
        {hosts.map((h) => {
          const used = h.memory_mib ? (h.memory_mib - h.memory_free_mib) / h.memory_mib : 0;
          return (
            <tr key={h.name}>
              <td>
                <a href={href(`/hosts/${encodeURIComponent(h.name)}`)}>{h.name}</a>
              </td>
              <td>
                <Badge value={hostState(h)} />
              </td>
              <td>{h.vms_running}</td>
              <td>
                <Meter value={used} title={`${mib(h.memory_mib - h.memory_free_mib)} of ${mib(h.memory_mib)}`} />
              </td>
              <td>
                {h.vcpus_free} ({h.cpus} CPUs)
              </td>
              <td title={(h.engine_score?.penalties || []).join('\n')}>
                {h.engine_score ? h.engine_score.score : '—'}
                {h.engine_local_maintenance && ' (local maintenance)'}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

function Engine({ res }) {
  if (res.error && !res.data) return <p class="muted">{res.error.message}</p>;
  if (!res.data) return <Loading what="the engine" />;
  const e = res.data;
  const state = word(e.state_enum, 'VM_STATUS_', e.state) || 'unknown';
  return (
    <div data-testid="engine">
      <p>
        <a href={href(`/vms/${encodeURIComponent(e.vm)}`)}>{e.vm}</a> <Badge value={state} />{' '}
        {e.host ? `on ${e.host}` : 'not running'}
        {e.global_maintenance && <span class="badge status-maintenance">global maintenance</span>}
      </p>
      <table>
        <thead>
          <tr>
            <th>Host</th>
            <th>State</th>
            <th>Score</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {(e.hosts || []).map((h) => (
            <tr key={h.host}>
              <td>{h.host}</td>
              <td>
                <Badge value={word(h.state_enum, 'HOST_STATE_', h.state)} />
              </td>
              <td title={(h.score?.penalties || []).join('\n')}>{h.score ? h.score.score : '—'}</td>
              <td>
                {h.engine_here && 'engine here'}
                {h.local_maintenance && ' local maintenance'}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

const MAX_ALERTS = 50;

function Alerts({ hosts, vms, events }) {
  if (!hosts && !vms && !events) return <Loading what="alerts" />;
  const alerts = [];
  for (const h of hosts?.hosts || []) {
    const s = hostState(h);
    if (s !== 'up') {
      alerts.push({
        level: s === 'maintenance' ? 'info' : 'warning',
        text: `Host ${h.name} is ${label(s)}${h.maintenance_reason ? ` (${h.maintenance_reason})` : ''}`,
        to: `/hosts/${encodeURIComponent(h.name)}`,
      });
    }
  }
  for (const vm of vms?.vms || []) {
    if (vm.hot_error) {
      alerts.push({ level: 'error', text: `VM ${vm.name}: ${vm.hot_error}`, to: `/vms/${encodeURIComponent(vm.name)}` });
    }
    if (vm.ha_restart) {
      const r = vm.ha_restart;
      alerts.push({
        level: 'error',
        text: `VM ${vm.name} waits for an HA restart (${r.attempts} attempts${r.last_error ? `: ${r.last_error}` : ''})`,
        to: `/vms/${encodeURIComponent(vm.name)}`,
      });
    }
  }
  const recent = (events?.events || [])
    .filter((e) => eventLevel(e) !== 'info' && Date.now() - Number(e.time_unix_ms) < 24 * 3600 * 1000)
    .sort((a, b) => Number(b.index) - Number(a.index))
    .slice(0, 20);
  for (const e of recent) {
    alerts.push({ level: eventLevel(e), text: `${e.message} (${ago(e.time_unix_ms)})`, to: '/events' });
  }
  if (alerts.length === 0) return <p class="muted" data-testid="alerts-none">Nothing needs attention.</p>;
  return (
    <ul class="alerts" data-testid="alerts">
      {alerts.slice(0, MAX_ALERTS).map((a, i) => (
        <li key={i} class={`level-${a.level}`}>
          <a href={href(a.to)}>{a.text}</a>
        </li>
      ))}
      {alerts.length > MAX_ALERTS && <li class="muted">and {alerts.length - MAX_ALERTS} more</li>}
    </ul>
  );
}
