// One VM: its details (or the configuration its next run gets), its power actions, live
// migration with a progress bar fed by the VM's `migration.progress`, and tabs for editing,
// devices, snapshots, permissions and the consoles. It polls the VM every 2 s, every 500 ms
// while a migration is queued or runs.
import { useEffect, useState } from 'preact/hooks';
import { del, get, post, seg } from '../api.js';
import { navigate } from '../router.js';
import { label, mib, time, vmStatus, word } from '../format.js';
import { ActionButton, Badge, Dialog, ErrorBox, Field, Loading, Notes, useResource } from '../ui.jsx';
import { VmEdit } from './VmEdit.jsx';
import { VmDevices } from './VmDevices.jsx';
import { VmSnapshots } from './VmSnapshots.jsx';
import { VmPermissions } from './VmPermissions.jsx';
import { Consoles } from './Consoles.jsx';

const TABS = [
  ['overview', 'Overview'],
  ['edit', 'Edit'],
  ['devices', 'Disks & NICs'],
  ['snapshots', 'Snapshots'],
  ['permissions', 'Permissions'],
  ['console', 'Console'],
];

export function VmPage({ vm: name }) {
  const [fast, setFast] = useState(false);
  const res = useResource(() => get(`/vms/${seg(name)}`), [name], fast ? 500 : 2000);
  const vm = res.data;
  const [tab, setTab] = useState('overview');
  const [error, setError] = useState(null);
  const [notes, setNotes] = useState(null);
  const [flash] = useState(() => {
    const f = sessionStorage.getItem('corral.flash');
    sessionStorage.removeItem('corral.flash');
    return f;
  });

  useEffect(() => setFast(!!vm?.migration), [!!vm?.migration]);

  if (!vm) {
    return (
      <div data-testid="vm-page">
        <h1>{name}</h1>
        <ErrorBox error={res.error} testid="vm-error" />
        {!res.error && <Loading what="the VM" />}
      </div>
    );
  }

  const done = (answer) => {
    setNotes(answer?.notes || null);
    res.reload();
  };
  const status = vmStatus(vm);

  return (
    <div data-testid="vm-page" data-name={vm.name} data-status={status} data-host={vm.host || ''}>
      <div class="title-row">
        <h1>
          {vm.name} <Badge value={status} />
          {vm.pending_next_run && (
            <span class="tag pending" data-testid="vm-pending-next-run" title="A configuration waits for the next run">
              next run pending
            </span>
          )}
        </h1>
        <span class="muted" data-testid="vm-host">
          {vm.host ? `on ${vm.host}` : 'not running'}
        </span>
      </div>
      {flash && (
        <div class="error" role="alert" data-testid="vm-flash">
          {flash}
        </div>
      )}
      <Actions vm={vm} onDone={done} onError={setError} />
      <ErrorBox error={error} testid="vm-action-error" />
      <ErrorBox error={res.error} testid="vm-error" />
      <Notes notes={notes} />
      {vm.migration && <MigrationProgress vm={vm} onError={setError} onDone={done} />}
      <nav class="tabs">
        {TABS.map(([id, text]) => (
          <button
            type="button"
            key={id}
            class={tab === id ? 'active' : ''}
            onClick={() => setTab(id)}
            data-testid={`tab-${id}`}
          >
            {text}
          </button>
        ))}
      </nav>
      {tab === 'overview' && <Overview vm={vm} />}
      {tab === 'edit' && <VmEdit vm={vm} onDone={done} />}
      {tab === 'devices' && <VmDevices vm={vm} onDone={done} />}
      {tab === 'snapshots' && <VmSnapshots vm={vm} onDone={done} />}
      {tab === 'permissions' && <VmPermissions vm={vm} />}
      {tab === 'console' && <Consoles vm={vm} />}
    </div>
  );
}

function Actions({ vm, onDone, onError }) {
  const [dialog, setDialog] = useState(null);
  const s = vmStatus(vm);
  const path = `/vms/${seg(vm.name)}`;
  const act = (what, body = {}) => () => post(`${path}/${what}`, body);
  const running = s !== 'down';
  const btn = (what, text, enabled, body) => (
    <ActionButton action={act(what, body)} onDone={onDone} onError={onError} testid={`vm-${what}`} disabled={!enabled}>
      {text}
    </ActionButton>
  );
  return (
    <div class="actions" data-testid="vm-actions">
      {btn('start', 'Start', s === 'down' || s === 'suspended' || s === 'paused')}
      <button type="button" disabled={!running} onClick={() => setDialog('shutdown')} data-testid="vm-shutdown">
        Shut down
      </button>
      <button type="button" disabled={!running} onClick={() => setDialog('stop')} data-testid="vm-stop">
        Power off
      </button>
      {btn('reboot', 'Reboot', s === 'up')}
      {btn('suspend', 'Suspend', s === 'up')}
      {btn('resume', 'Resume', s === 'suspended' || s === 'paused')}
      <button type="button" disabled={s !== 'up' || !!vm.migration} onClick={() => setDialog('migrate')} data-testid="vm-migrate">
        Migrate
      </button>
      <button type="button" class="danger" onClick={() => setDialog('delete')} data-testid="vm-delete">
        Delete
      </button>
      {dialog === 'shutdown' && (
        <Dialog
          title={`Shut down ${vm.name}`}
          testid="shutdown-dialog"
          submitLabel="Shut down"
          onClose={() => setDialog(null)}
          submit={async (f) =>
            onDone(
              await post(`${path}/shutdown`, {
                reason: String(f.get('reason') || ''),
                timeout_seconds: Number(f.get('timeout') || 0),
              }),
            )
          }
        >
          <p>An ACPI shutdown; the VM is powered off when the timeout passes.</p>
          <Field label="Reason">
            <input name="reason" data-testid="shutdown-reason" />
          </Field>
          <Field label="Timeout (seconds, 0: 120)">
            <input name="timeout" type="number" min="0" value="0" />
          </Field>
        </Dialog>
      )}
      {dialog === 'stop' && (
        <Dialog
          title={`Power off ${vm.name}`}
          testid="stop-dialog"
          submitLabel="Power off"
          onClose={() => setDialog(null)}
          submit={async (f) => onDone(await post(`${path}/stop`, { reason: String(f.get('reason') || '') }))}
        >
          <p>The guest is stopped at once, as when pulling the plug.</p>
          <Field label="Reason">
            <input name="reason" data-testid="stop-reason" />
          </Field>
        </Dialog>
      )}
      {dialog === 'migrate' && <MigrateDialog vm={vm} onClose={() => setDialog(null)} onDone={onDone} />}
      {dialog === 'delete' && (
        <Dialog
          title={`Delete ${vm.name}`}
          testid="delete-dialog"
          submitLabel="Delete"
          onClose={() => setDialog(null)}
          submit={async (f) => {
            await del(path, { keep_disks: f.get('keep_disks') === 'on' ? 'true' : '' });
            navigate('/vms');
          }}
        >
          <p>The VM's configuration goes; its disks too unless kept.</p>
          <label class="check">
            <input type="checkbox" name="keep_disks" /> Keep its disks as floating disks
          </label>
        </Dialog>
      )}
    </div>
  );
}

function MigrateDialog({ vm, onClose, onDone }) {
  const hosts = useResource(() => get('/hosts'), []);
  const choices = (hosts.data?.hosts || []).filter((h) => h.name !== vm.host);
  return (
    <Dialog
      title={`Migrate ${vm.name}`}
      testid="migrate-dialog"
      submitLabel="Migrate"
      onClose={onClose}
      submit={async (f) => onDone(await post(`/vms/${seg(vm.name)}/migrate`, { to: String(f.get('to') || '') }))}
    >
      <p>
        From {vm.host}. A live migration: the guest runs on while its memory is copied.
      </p>
      <Field label="To">
        <select name="to" data-testid="migrate-to">
          <option value="">automatic (the scheduler picks)</option>
          {choices.map((h) => (
            <option key={h.name} value={h.name}>
              {h.name} ({label(word(h.state_enum, 'HOST_STATE_', h.state))}, {mib(h.memory_free_mib)} free)
            </option>
          ))}
        </select>
      </Field>
      <ErrorBox error={hosts.error} />
    </Dialog>
  );
}

function MigrationProgress({ vm, onDone, onError }) {
  const m = vm.migration;
  const p = m.progress;
  const pct = p ? Math.max(0, Math.min(100, p.percent)) : 0;
  const moved = p ? Math.max(0, p.memory_total_mib - p.memory_remaining_mib) : 0;
  return (
    <div class="migration card" data-testid="migration">
      <div>
        Migrating{vm.migrating_to ? ` to ${vm.migrating_to}` : ''}
        {m.automatic ? ' (automatic)' : ''}
        {m.cancel ? ', being cancelled' : ''}
      </div>
      {p ? (
        <>
          <progress max="100" value={pct} data-testid="migration-progress" data-percent={pct} />
          <span data-testid="migration-text">
            {pct}% · {mib(moved)} of {mib(p.memory_total_mib)} copied · {mib(p.memory_remaining_mib)} left · pass{' '}
            {p.iteration} · {(p.elapsed_ms / 1000).toFixed(1)} s
          </span>
        </>
      ) : (
        <>
          <progress max="100" data-testid="migration-progress" data-percent="queued" />
          <span data-testid="migration-text">queued on its host since {time(m.queued_unix_ms)}</span>
        </>
      )}
      {!m.cancel && (
        <ActionButton
          action={() => post(`/vms/${seg(vm.name)}/cancel-migration`, {})}
          onDone={onDone}
          onError={onError}
          testid="vm-cancel-migration"
        >
          Cancel
        </ActionButton>
      )}
    </div>
  );
}

function Overview({ vm }) {
  const [nextRun, setNextRun] = useState(false);
  const nr = useResource(
    () => (nextRun ? get(`/vms/${seg(vm.name)}`, { next_run: 'true' }) : Promise.resolve(null)),
    [vm.name, nextRun, vm.updated_unix_ms],
  );
  const shown = nextRun && nr.data ? nr.data : vm;
  return (
    <div>
      <label class="check">
        <input
          type="checkbox"
          checked={nextRun}
          onChange={(e) => setNextRun(e.currentTarget.checked)}
          data-testid="toggle-next-run"
        />{' '}
        Show the configuration of its next run
      </label>
      <ErrorBox error={nr.error} />
      <Details vm={shown} testid={nextRun ? 'next-run-view' : 'vm-details'} />
    </div>
  );
}

function Details({ vm, testid }) {
  const rows = [
    ['Id', vm.id],
    ['Status', label(vmStatus(vm))],
    ['Host', vm.host || '—'],
    ['Memory', `${mib(vm.memory_mib)}${vm.max_memory_mib > vm.memory_mib ? ` (hot-plug up to ${mib(vm.max_memory_mib)})` : ''}`],
    ['vCPUs', `${vm.vcpus}${vm.max_vcpus > vm.vcpus ? ` (hot-plug up to ${vm.max_vcpus})` : ''}`],
    ['Description', vm.description],
    ['Comment', vm.comment],
    ['High availability', vm.ha?.enabled ? `on, priority ${word(vm.ha.priority_enum, 'HA_PRIORITY_', vm.ha.priority)}` : 'off'],
    ['Guest OS', vm.os],
    ['Domain type', word(vm.domain_type_enum, 'DOMAIN_TYPE_', vm.domain_type) || "its host's"],
    ['Migration', word(vm.migration_policy_enum, 'MIGRATION_POLICY_', vm.migration_policy)],
    ['Resume after I/O error', word(vm.resume_behavior_enum, 'RESUME_BEHAVIOR_', vm.resume_behavior)],
    ['Host tags', (vm.host_tags || []).join(', ')],
    ['Pinned to', (vm.pinned_hosts || []).join(', ')],
    ['Template', vm.template ? `${vm.template}${vm.thin ? ' (thin)' : ''}` : ''],
    ['Offering', vm.offering],
    ['CD-ROM', vm.iso || vm.cdrom || ''],
    ['Boot', (vm.boot || []).join(', ')],
    ['Stateless', vm.stateless ? 'yes' : ''],
    ['Cloud-init', vm.cloud_init ? 'yes' : ''],
    ['Delete protected', vm.delete_protected ? 'yes' : ''],
    ['Hosted engine', vm.hosted_engine ? 'yes' : ''],
    ['Created', time(vm.created_unix_ms)],
    ['Last stop', vm.stop_reason],
    ['Last hot-plug error', vm.hot_error],
    [
      'HA restart',
      vm.ha_restart
        ? `failed ${time(vm.ha_restart.failed_unix_ms)}, ${vm.ha_restart.attempts} attempts, next ${time(vm.ha_restart.next_try_unix_ms)}${vm.ha_restart.last_error ? `: ${vm.ha_restart.last_error}` : ''}`
        : '',
    ],
  ];
  const n = vm.next_run;
  if (n) {
    const parts = [];
    if (n.memory_mib !== undefined) parts.push(`memory ${mib(n.memory_mib)}`);
    if (n.vcpus !== undefined) parts.push(`${n.vcpus} vCPUs`);
    if (n.max_memory_mib !== undefined) parts.push(`max memory ${mib(n.max_memory_mib)}`);
    if (n.max_vcpus !== undefined) parts.push(`max vCPUs ${n.max_vcpus}`);
    if (n.os !== undefined) parts.push(`OS ${n.os}`);
    if (n.domain_type !== undefined) parts.push(`domain type ${word(n.domain_type_enum, 'DOMAIN_TYPE_', n.domain_type)}`);
    if (n.cdrom !== undefined) parts.push(`CD ${n.cdrom}`);
    if (n.cdrom_ejected) parts.push('CD ejected');
    rows.splice(5, 0, ['At the next run', parts.join(', ')]);
  }
  return (
    <table class="details" data-testid={testid}>
      <tbody>
        {rows
          .filter(([, v]) => v !== '' && v !== undefined && v !== null)
          .map(([k, v]) => (
            <tr key={k}>
              <th>{k}</th>
              <td data-field={k}>{v}</td>
            </tr>
          ))}
      </tbody>
    </table>
  );
}
